"""Figures and tables for results (matplotlib, Agg backend; optional dependency)."""

__all__ = ["error_table", "plot_histories", "plot_reconstructions", "phase_corrected_error", "markdown_table"]

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


def phase_corrected_error(x, w, x_true, w_true) -> float:
    r"""Relative error of :math:`z = x + i\sum_e w_e` after the best global phase factor."""
    z = x + 1j * w.sum(0)
    zt = x_true + 1j * w_true.sum(0)
    c = np.vdot(z, zt)
    phase = c / abs(c) if abs(c) > 0 else 1.0
    return float(np.linalg.norm(z * phase - zt) / np.linalg.norm(zt))


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
        tmaps = [truth["x"]] + [truth["w"][e] for e in range(ne)] if show_err else None
        for k, (label, m) in enumerate(maps):
            ax = axes[i, k]
            ax.imshow(m, cmap="gray", vmin=1, vmax=2) if truth else ax.imshow(m, cmap="gray")
            ax.set_title(f"{method}: {label}", fontsize=8)
            ax.axis("off")
            if show_err:
                ax = axes[i, cols + k]
                ax.imshow(np.abs(m - tmaps[k]), cmap="magma", vmin=0, vmax=0.5)
                ax.set_title(f"|error| {label}", fontsize=8)
                ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
