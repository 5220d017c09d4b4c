"""Figures and tables for results (matplotlib, Agg backend; optional dependency)."""

__all__ = ["error_table", "plot_histories", "plot_reconstructions", "phase_corrected_error", "markdown_table",
           "best_phase_error", "calibration_rows", "plot_calibration"]

from pathlib import Path

import numpy as np

from .errors import ConfigError


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover - matplotlib is in the test extras
        msg = "figures need matplotlib: pip install 'multimodal_ip[plot]'"
        raise ConfigError(msg) from exc
    return plt


def best_phase_error(estimate, truth) -> float:
    """Relative error of a complex array after the best global phase factor (intensities cannot see it)."""
    c = np.vdot(estimate, truth)
    phase = c / abs(c) if abs(c) > 0 else 1.0
    return float(np.linalg.norm(estimate * phase - truth) / np.linalg.norm(truth))


def phase_corrected_error(x, w, x_true, w_true) -> float:
    r"""Relative error of :math:`z = x + i\sum_e w_e` after the best global phase factor."""
    return best_phase_error(x + 1j * w.sum(0), x_true + 1j * w_true.sum(0))


def markdown_table(header, rows) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def error_table(results: dict, truth: dict) -> list:
    """Rows ``[method, error_x, error_w, error_total, error_z_phase, time_s]`` from ``{method: Result}``."""
    rows = []
    for method, res in results.items():
        h = res.history
        zerr = phase_corrected_error(res.arrays["x"], res.arrays["w"], truth["x"], truth["w"]) if truth else np.nan
        rows.append([method, h["error_x"][-1], h["error_w"][-1], h["error_total"][-1], zerr, h["time_s"][-1]])
    return rows


def plot_histories(histories: dict, path) -> Path:
    """Log-log objective and relative error versus iteration, one line per method."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for method, h in histories.items():
        it = h["iteration"] + 1
        axes[0].loglog(it, h["objective"] / h["objective"][0], label=method)
        if "error_total" in h.columns:
            axes[1].loglog(it, h["error_total"], label=method)
    axes[0].set(xlabel="iteration + 1", ylabel="objective / initial objective", title="loss")
    axes[1].set(xlabel="iteration + 1", ylabel="relative error ||v - v*|| / ||v*||", title="error")
    for ax in axes:
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_reconstructions(arrays: dict, truth: dict | None, path) -> Path:
    """Grid of x and w_e per method (rows), with the truth first and error maps when a truth is known."""
    plt = _plt()
    methods = ([("truth", truth)] if truth else []) + list(arrays.items())
    ne = next(iter(arrays.values()))["w"].shape[0]
    cols = 1 + ne
    show_err = truth is not None
    fig, axes = plt.subplots(len(methods), cols * (2 if show_err else 1),
                             figsize=(2.6 * cols * (2 if show_err else 1), 2.5 * len(methods)), squeeze=False)
    for i, (method, a) in enumerate(methods):
        maps = [("x", a["x"])] + [(f"w{e}", a["w"][e]) for e in range(ne)]
        tmaps = [truth["x"]] + [truth["w"][e] for e in range(ne)] if truth is not None else []
        for k, (label, m) in enumerate(maps):
            ax = axes[i, k]
            ax.imshow(m, cmap="gray", vmin=1, vmax=2) if truth else ax.imshow(m, cmap="gray")
            ax.set_title(f"{method}: {label}", fontsize=8)
            ax.axis("off")
            if tmaps:
                ax = axes[i, cols + k]
                ax.imshow(np.abs(m - tmaps[k]), cmap="magma", vmin=0, vmax=0.5)
                ax.set_title(f"|error| {label}", fontsize=8)
                ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


def calibration_rows(results: dict, start: dict, truth: dict | None) -> list:
    """Rows ``[method, probe error, positions rms (px), mean position shift (px)]`` for refined results
    (``start``: the calibration's start values; errors ``nan`` without a truth)."""
    rows = []
    for method, arrays in results.items():
        probe = arrays.get("probe", start.get("probe"))
        pos = arrays.get("positions", start.get("positions"))
        p_err = best_phase_error(probe, truth["probe"]) if truth and "probe" in truth and probe is not None else np.nan
        rms = float(np.sqrt(np.mean((pos - truth["positions"]) ** 2))) if truth and "positions" in truth \
            and pos is not None else np.nan
        shift = float(np.mean(np.hypot(*(pos - start["positions"]).T))) if pos is not None and "positions" in start \
            else np.nan
        rows.append([method, p_err, rms, shift])
    return rows


def plot_calibration(results: dict, start: dict, truth: dict | None, path) -> Path:
    """Refined probes (amplitude) per method next to the start probe, and the position shifts (arrows from
    the start positions, drawn 10x longer; the true shifts in grey when known)."""
    plt = _plt()
    methods = [(m, a) for m, a in results.items() if "probe" in a or "positions" in a]
    probes = [("start", start["probe"])] + [(m, a["probe"]) for m, a in methods if "probe" in a] \
        if "probe" in start else []
    fig, axes = plt.subplots(1, len(probes) + 1, figsize=(3.2 * (len(probes) + 1), 3.2), squeeze=False)
    for ax, (label, p) in zip(axes[0], probes):
        ax.imshow(np.abs(p), cmap="magma")
        ax.set_title(f"|probe|: {label}", fontsize=8)
        ax.axis("off")
    ax = axes[0, -1]
    if "positions" in start:
        p0 = start["positions"]
        if truth and "positions" in truth:
            d = truth["positions"] - p0
            ax.quiver(p0[:, 1], p0[:, 0], 10 * d[:, 1], 10 * d[:, 0], color="0.6", angles="xy", scale_units="xy",
                      scale=1, label="true shift")
        for i, (m, a) in enumerate(methods):
            if "positions" in a and np.any(a["positions"] != p0):
                d = a["positions"] - p0
                ax.quiver(p0[:, 1], p0[:, 0], 10 * d[:, 1], 10 * d[:, 0], angles="xy", scale_units="xy", scale=1,
                          label=m, color=f"C{i}")
        ax.invert_yaxis()
        ax.set_title("position shifts (x10)", fontsize=8)
        ax.legend(fontsize=6)
    else:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
