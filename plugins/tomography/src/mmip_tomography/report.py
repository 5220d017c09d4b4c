"""Report plugin ``tomography``: measured sinograms beside each method's fit and the residual (``mmip compare``)."""

__all__ = ["SinogramReport", "plot_sinograms"]

from pathlib import Path

import numpy as np

from multimodal_ip.backend import to_numpy
from multimodal_ip.report import figure_backend


def plot_sinograms(problem, arrays: dict, path) -> Path | None:
    """One row per sinogram (each element of a fluorescence term, the transmission): measured, then each method's
    fit (the term's model at that method's ``w``), then the joint residual.

    Parameters
    ----------
    problem : :obj:`multimodal_ip.problem.JointProblem`
        The problem the methods solved; its transmission and XRF tomography terms that are not split into parts
        are drawn.
    arrays : :obj:`dict`
        Method name -> its result arrays (by variable name, with ``w``).
    path : :obj:`str` or :obj:`pathlib.Path`
        The image file to write (format from its suffix).

    Returns
    -------
    path : :obj:`pathlib.Path` or :obj:`None`
        The file written; ``None`` (nothing written) when the problem has no whole tomography term.
    """
    from .models import TransmissionModel, XRFTomographyModel

    # tomography terms evaluated whole (a term split into parts has no one sinogram to draw)
    terms = [t for t in problem.terms if isinstance(t.operator, (TransmissionModel, XRFTomographyModel))
             and problem.parts[t.name] == 1]
    if not terms:
        return None
    plt = figure_backend()
    rows = []
    for t in terms:
        data = to_numpy(t.data)
        fits = {m: to_numpy(t.operator.forward(problem.xp.asarray(a["w"], dtype=t.operator.dtype)))
                for m, a in arrays.items() if "w" in a}
        if data.ndim == 2:  # one sinogram (transmission)
            rows.append((t.name, data, fits))
        else:  # one per element
            rows += [(f"{t.name}[{e}]", data[e], {m: f[e] for m, f in fits.items()}) for e in range(data.shape[0])]
    methods = [m for m, a in arrays.items() if "w" in a]  # a result without the maps has no sinogram to draw
    if not methods:
        return None
    fig, axes = plt.subplots(len(rows), len(methods) + 2, figsize=(2.4 * (len(methods) + 2), 2.0 * len(rows)),
                             squeeze=False)
    for ax_row, (label, data, fits) in zip(axes, rows):
        lo, hi = float(data.min()), float(data.max())
        panels = [(f"{label}: measured", data)] + [(f"{m}", fits[m]) for m in methods]
        for ax, (title, img) in zip(ax_row, panels):
            ax.imshow(img.T, aspect="auto", cmap="viridis", vmin=lo, vmax=hi)
            ax.set_title(title, fontsize=7)
            ax.axis("off")
        resid = fits[methods[0]] - data
        ax_row[-1].imshow(resid.T, aspect="auto", cmap="RdBu", vmin=-np.abs(resid).max(), vmax=np.abs(resid).max())
        ax_row[-1].set_title(f"{methods[0]} - measured", fontsize=7)
        ax_row[-1].axis("off")
    fig.suptitle("sinograms (angle →, detector ↓)", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)


class SinogramReport:
    """Adds ``sinograms.png`` to ``mmip compare`` when the problem has tomography terms."""

    def figures(self, arrays, start, truth, outdir, problems=None):
        if not problems:
            return []
        full = max(problems.values(), key=lambda p: len(p.term_names))
        path = plot_sinograms(full, arrays, Path(outdir) / "sinograms.png")
        return [("Sinograms: measured, fitted, residual", path.name)] if path else []
