"""Report plugin of the scanning-probe calibration: refined probe and scan positions against their start values
(and the truth, when known). Registered as the report ``calibration``; used by ``mmip compare`` and ``mmip report``
whenever results hold a ``probe`` or ``positions`` variable."""

__all__ = ["calibration_rows", "plot_calibration", "CalibrationReport"]

from pathlib import Path

import numpy as np

from multimodal_ip.report import figure_backend

from .phase_error import best_phase_error


def calibration_rows(results: dict, start: dict, truth: dict | None) -> list:
    """Rows ``[method, probe error, positions rms (px), mean position shift (px)]`` for refined results
    (``start``: the calibration's start values; errors ``nan`` without a truth).

    Parameters
    ----------
    results : :obj:`dict`
        Method name -> its result arrays (by variable name; ``probe`` and ``positions`` where refined).
    start : :obj:`dict`
        The calibration's start values (``probe``, ``positions``), used for what a method did not refine.
    truth : :obj:`dict` or :obj:`None`
        True arrays (``probe``, ``positions``) where known.

    Returns
    -------
    rows : :obj:`list`
        One ``[method, probe error, positions rms, mean shift]`` row per method: the probe error is
        :func:`~mmip_ptychography.best_phase_error`, the rms against the true positions, the shift against ``start``.
    """
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
    the start positions, drawn 10x longer; the true shifts in grey when known).

    Parameters
    ----------
    results : :obj:`dict`
        Method name -> its result arrays (``probe`` and/or ``positions`` where refined; others are left out).
    start : :obj:`dict`
        The calibration's start values (``probe``, ``positions``).
    truth : :obj:`dict` or :obj:`None`
        True arrays; its ``positions`` give the grey arrows.
    path : :obj:`str` or :obj:`pathlib.Path`
        The image file to write (format from its suffix).

    Returns
    -------
    path : :obj:`pathlib.Path`
        The file written.
    """
    plt = figure_backend()
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


#: names of the entries of the ``affine`` unknown, in order
AFFINE_NAMES = ["m00", "m01", "m10", "m11", "t0", "t1"]


class CalibrationReport:
    """``tables`` and ``figures`` for results that refined a probe, scan positions and/or their affine map."""

    header = ["method", "probe error (best phase)", "positions rms (px)", "mean shift (px)"]

    @staticmethod
    def _concerns(arrays, start) -> bool:
        return bool(start) and ("probe" in start or "positions" in start)

    def tables(self, arrays, start, truth):
        out = []
        if self._concerns(arrays, start):
            rows = [[r[0]] + [f"{v:.4f}" for v in r[1:]] for r in calibration_rows(arrays, start, truth)]
            out.append(("Calibration", self.header, rows))
        affine = [(m, a["affine"]) for m, a in arrays.items() if "affine" in a]
        if affine:  # the positions columns above are of the positions variable, before this map
            out.append(("Affine map of the scan (px; the positions the terms see are p + M u + t, "
                        "mmip_scanprobe.affine_positions)", ["method", *AFFINE_NAMES],
                        [[m, *(f"{float(v):+.4f}" for v in np.ravel(a))] for m, a in affine]))
        return out

    def figures(self, arrays, start, truth, outdir):
        if not self._concerns(arrays, start):
            return []
        plot_calibration(arrays, start, truth, Path(outdir) / "calibration.png")
        return [("calibration", "calibration.png")]
