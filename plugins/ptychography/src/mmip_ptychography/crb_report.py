"""Report plugin ``position-bound``: the Cramer-Rao bound of every refined scan position (object and probe known,
evaluated at the result), next to the actual error when the truth is known. ``mmip report`` hands it the input
dataset named in the result's configuration."""

__all__ = ["PositionBoundReport", "result_position_bounds"]

from pathlib import Path

import numpy as np

from multimodal_ip.errors import MultimodalIPError
from multimodal_ip.report import figure_backend

from .coupling import term_coefficients


def _ptychography_term(dataset):
    """The dataset's first ptychography term with a finite photon scale, else ``None``."""
    for td in getattr(dataset, "terms", {}).values():
        if td.modality == "ptychography" and np.isfinite(float(td.attrs.get("photons_per_unit", np.inf))):
            return td
    return None


def result_position_bounds(arrays, term):
    """Per-position bound (px) of a result that refined positions, at its object, probe and positions.

    Parameters
    ----------
    arrays : :obj:`dict`
        The result's variables: ``x``, ``w`` and ``positions`` (``probe`` when refined; else the term's).
    term : :class:`~multimodal_ip.io.TermData`
        The ptychography term (its ``probe``, ``photons_per_unit`` and ``coupling``).

    Returns
    -------
    bound : :obj:`numpy.ndarray`
        ``(J,)``: :func:`~mmip_ptychography.fisher.position_bounds` of the cubic-window model, Poisson counts.
    """
    from .fisher import fisher_weight, position_bounds, position_fisher

    w = np.asarray(arrays["w"], dtype=float)
    w = w.reshape(-1, *np.shape(arrays["x"]))
    a = term_coefficients(term.attrs, len(w))
    z = np.asarray(arrays["x"], dtype=float) + 1j * np.tensordot(a, w, axes=1)
    probe = arrays.get("probe", term.arrays["probe"])
    weight = fisher_weight(photons_per_unit=float(term.attrs["photons_per_unit"]))
    return position_bounds(position_fisher(z, probe, arrays["positions"], weight))[0]


def _stats(v) -> list:
    return [float(np.sqrt(np.mean(v**2))), float(np.median(v)), float(np.max(v))]


class PositionBoundReport:
    """``tables`` and ``figures`` of the positions' Cramer-Rao bound, for results that refined ``positions`` of a
    ptychography term whose data have a photon scale (``photons_per_unit``)."""

    header = ["method", "bound rms (px)", "bound median", "bound max", "error rms (px)", "error median",
              "error max"]

    def __init__(self):
        self._cache: dict = {}

    def _bounds(self, arrays, dataset) -> dict:
        """``{method: (positions, bound, error or None)}`` of the methods that refined positions (cached)."""
        term = _ptychography_term(dataset)
        if term is None:
            return {}
        key = (id(arrays), id(dataset))
        if key not in self._cache:
            self._cache = {key: {}}
            truth = getattr(dataset, "truth", None) or {}
            for method, a in arrays.items():
                if "positions" not in a or "x" not in a or "w" not in a:
                    continue
                pos = np.asarray(a["positions"], dtype=float)
                try:
                    bound = result_position_bounds(a, term)
                    err = np.hypot(*(pos - truth["positions"]).T) if "positions" in truth else None
                except (MultimodalIPError, ValueError) as exc:  # a result that does not fit the data file
                    print(f"note: no position bound for {method} ({exc})")
                    continue
                self._cache[key][method] = (pos, bound, err)
        return self._cache[key]

    def tables(self, arrays, start, truth, dataset=None):
        """One table: rms / median / max over positions of the bound and of the actual error (``nan`` without a
        truth)."""
        rows = []
        for method, (_, bound, err) in self._bounds(arrays, dataset).items():
            e = _stats(err) if err is not None else [np.nan] * 3
            rows.append([method, *(f"{v:.4f}" for v in (*_stats(bound), *e))])
        if not rows:
            return []
        return [("Cramer-Rao bound of the refined positions (object and probe known, at the result; Poisson counts)",
                 self.header, rows)]

    def figures(self, arrays, start, truth, outdir, dataset=None):
        """``position_bound.png``: the positions coloured by their bound, the actual errors as arrows (x10)."""
        bounds = self._bounds(arrays, dataset)
        if not bounds:
            return []
        plt = figure_backend()
        fig, axes = plt.subplots(1, len(bounds), figsize=(4.2 * len(bounds), 3.6), squeeze=False)
        t = (getattr(dataset, "truth", None) or {}).get("positions")
        for ax, (method, (pos, bound, err)) in zip(axes[0], bounds.items()):
            dots = ax.scatter(pos[:, 1], pos[:, 0], c=bound, cmap="viridis", s=18)
            fig.colorbar(dots, ax=ax, label="bound (px)")
            if err is not None and t is not None:
                d = pos - t
                ax.quiver(t[:, 1], t[:, 0], 10 * d[:, 1], 10 * d[:, 0], color="0.4", angles="xy",
                          scale_units="xy", scale=1, width=0.004)
            ax.invert_yaxis()
            ax.set_aspect("equal")
            ax.set_title(f"{method}: Cramer-Rao bound" + (" and error (x10)" if err is not None else ""), fontsize=8)
        fig.tight_layout()
        fig.savefig(Path(outdir) / "position_bound.png", dpi=90)
        plt.close(fig)
        return [("position bound", "position_bound.png")]
