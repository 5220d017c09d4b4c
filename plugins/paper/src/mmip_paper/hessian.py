"""The paper's Hessian study: eigenvalue spectra and 2-D loss landscapes at the true point."""

__all__ = ["hessian_spectrum", "loss_landscape", "hessian_study", "study_bytes"]

import json
from pathlib import Path

import numpy as np
import scipy.sparse.linalg as spla

from multimodal_ip.errors import DataError

#: unknown-sized vectors of the study besides its Hessian blocks: the true point, a product's input and output, and
#: a landscape point with its two scaled directions
STUDY_VECTORS = 6


def study_bytes(n, dense_max=9000, k=40, grid=21) -> int:
    """Bytes the study's blocks take for ``n`` unknowns (float64), besides the data, the problem's vectors and its
    terms' temporaries: dense (``n <= dense_max``), the second problem's matrix, identity, symmetrised copy and
    eigenvectors with ``eigh``'s workspace (two matrices) beside the first's eigenvectors; else the Lanczos basis and
    work vectors of ``eigsh`` beside the eigenvectors kept; and the landscapes.

    Parameters
    ----------
    n : :obj:`int`
        Unknowns (real entries of the packed vector).
    dense_max, k, grid : :obj:`int`, optional
        As in :func:`hessian_study`.

    Returns
    -------
    nbytes : :obj:`int`
        The estimate.
    """
    if n <= dense_max:
        return int(7 * 8 * n * n + 40 * grid * grid)  # 6 counted: 8 % under the measured peak at n = 2048
    ncv = min(n, max(2 * k + 1, 20))
    return int(8 * n * (2 * k + max(ncv + 3 + k, 6 * k)) + 40 * grid * grid)


def hessian_spectrum(problem, v, dense_max=9000, k=40):
    r"""Eigenvalues (ascending) and eigenvectors of the Gauss-Newton Hessian at ``v``.

    At a noise-free true point the residuals vanish and the Gauss-Newton matrix *is* the
    Hessian. Dense (``numpy.linalg.eigh``) up to ``dense_max`` unknowns; beyond, the ``k``
    largest and ``k`` smallest by Lanczos (``scipy.sparse.linalg.eigsh``).

    Parameters
    ----------
    problem : :class:`~multimodal_ip.JointProblem`
        The problem (its ``linearize(v).gauss_newton``).
    v : :obj:`numpy.ndarray`
        Packed point.
    dense_max : :obj:`int`, optional
        Largest number of unknowns for the dense eigendecomposition.
    k : :obj:`int`, optional
        Eigenvalues computed at each end of the spectrum by Lanczos.

    Returns
    -------
    eigenvalues : :obj:`numpy.ndarray`
        Ascending (all of them when dense, ``2 k`` otherwise).
    eigenvectors : :obj:`numpy.ndarray`
        Columns matching ``eigenvalues``.

    Raises
    ------
    DataError
        The dense matrix would exceed the memory budget (``MMIP_MAX_MEMORY``).
    """
    from multimodal_ip.safety import MemoryBudget

    h = problem.linearize(v).gauss_newton(0.0)
    n = h.shape[0]
    if n <= dense_max:  # the matrix, the identity, the symmetrised copy and eigh's eigenvectors and workspace
        MemoryBudget().take(5 * 8 * n * n, f"the dense Hessian of {n} unknowns (--dense-max {dense_max}; lower it "
                                           "for Lanczos)")
        dense = np.empty((n, n))
        eye = np.eye(n)
        for i in range(n):
            dense[:, i] = h.matvec(eye[i])
        dense = 0.5 * (dense + dense.T)
        return np.linalg.eigh(dense)
    op = spla.LinearOperator((n, n), matvec=h.matvec, dtype=float)
    top_vals, top_vecs = spla.eigsh(op, k=k, which="LA")
    low_vals, low_vecs = spla.eigsh(op, k=k, which="SA")
    vals = np.concatenate([low_vals, top_vals])
    order = np.argsort(vals)
    return vals[order], np.concatenate([low_vecs, top_vecs], axis=1)[:, order]


def loss_landscape(problem, v, d1, d2, radius, grid=21):
    """Objective on the plane ``v + a d1 + b d2``, ``a, b`` in ``[-radius, radius]``.

    Parameters
    ----------
    problem : :class:`~multimodal_ip.JointProblem`
        The problem (its ``value``).
    v : :obj:`numpy.ndarray`
        Packed centre point.
    d1, d2 : :obj:`numpy.ndarray`
        Packed directions.
    radius : :obj:`float`
        Half-width of the square in ``a`` and ``b``.
    grid : :obj:`int`, optional
        Points per side.

    Returns
    -------
    t : :obj:`numpy.ndarray`
        The ``grid`` values of ``a`` (and ``b``).
    values : :obj:`numpy.ndarray`
        Objective, shape ``(grid, grid)``, indexed ``[a, b]``.
    """
    t = np.linspace(-radius, radius, grid)
    return t, np.array([[problem.value(v + a * d1 + b * d2) for b in t] for a in t])


def hessian_study(dataset, joint, outdir: Path, dense_max=9000, k=40, grid=21, reference=None, run=None):
    """Spectra and landscapes for ``reference`` alone versus joint; writes PNGs and ``hessian.json``.

    Parameters
    ----------
    dataset : :class:`~multimodal_ip.io.Dataset`
        The data, with the truth of every variable (the study's point).
    joint : :class:`~multimodal_ip.JointProblem`
        The joint problem.
    outdir : :obj:`pathlib.Path`
        Folder for ``eigenvalues.png``, ``landscapes.png`` and ``hessian.json`` (created).
    dense_max, k : :obj:`int`, optional
        As in :func:`hessian_spectrum`.
    grid : :obj:`int`, optional
        Points per side of each landscape.
    reference : :obj:`str`, optional
        Term studied alone (default the first term).
    run : :obj:`dict`, optional
        The run's setting, recorded as ``hessian.json``'s entry ``run`` beside the problems' (``mmip hessian``: the
        chunk size its blocks were built with, ``chunk_memory``, and whether the memory budget fitted it, ``fitted``);
        ``chunk_memory`` is written in bytes (an :obj:`int`, ``null`` for the default blocks), whether given as the
        user's text (``"64M"``) or as the fitted byte count.

    Returns
    -------
    summary : :obj:`str`
        A few lines: each problem's eigenvalue count, largest value and condition, and the files written.

    Raises
    ------
    DataError
        The dataset lacks the truth of a variable, or the study would exceed the memory budget.
    """
    missing = [n for n in joint.space.names if n not in dataset.truth]
    if missing:
        msg = f"{dataset.source}: the Hessian study needs the truth of every variable; no /truth/{missing[0]}"
        raise DataError(msg)
    from multimodal_ip.report import figure_backend as _plt
    from multimodal_ip.safety import MemoryBudget

    # sizes from flags, before any work: the landscapes (one Python float and one array entry per point)
    MemoryBudget().take(40 * grid * grid, f"a loss landscape of {grid} x {grid} points (--grid)")
    outdir.mkdir(parents=True, exist_ok=True)
    reference = reference or joint.term_names[0]
    v = joint.space.pack({n: dataset.truth[n] for n in joint.space.names})
    problems = {f"{reference} alone": joint.alone(reference), "joint": joint}
    spectra, summary = {}, {}
    for name, prob in problems.items():
        vals, vecs = hessian_spectrum(prob, v, dense_max, k)
        spectra[name] = (vals, vecs)
        top = vals.max()
        pos = vals[vals > 1e-12 * top]
        summary[name] = {
            "n_eigenvalues": int(vals.size), "largest": float(top), "smallest": float(vals.min()),
            "condition_positive": float(top / pos.min()) if pos.size else float("inf"),
            "fraction_below_1e-6": float(np.mean(vals < 1e-6 * top)),
            "median_normalised": float(np.median(vals / top)),
        }
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, (vals, _) in spectra.items():
        normed = np.clip(vals / vals.max(), 1e-16, None)
        ax.hist(np.log10(normed), bins=60, alpha=0.5, label=name)
    ax.set(xlabel="log10(eigenvalue / largest)", ylabel="count", title="Hessian eigenvalues at the true point")
    ax.legend()
    fig.tight_layout()
    fig.savefig(outdir / "eigenvalues.png", dpi=110)
    plt.close(fig)
    radius = 0.5 * float(np.linalg.norm(v)) / np.sqrt(v.size) * 10
    fig, axes = plt.subplots(2, 2, figsize=(9, 8))
    for col, (name, (vals, vecs)) in enumerate(spectra.items()):
        n = vals.size
        pairs = {"sharp (2 largest)": (n - 1, n - 2), "flat (median)": (n // 2, n // 2 + 1)}
        for row, (label, (i, j)) in enumerate(pairs.items()):
            t, land = loss_landscape(problems[name], v, vecs[:, i], vecs[:, j], radius, grid)
            ax = axes[row, col]
            cs = ax.contourf(t, t, np.log10(land + 1e-16), levels=20, cmap="viridis")
            fig.colorbar(cs, ax=ax)
            ax.set(title=f"{name}: {label}", xlabel=f"along v{j}", ylabel=f"along v{i}")
    fig.tight_layout()
    fig.savefig(outdir / "landscapes.png", dpi=100)
    plt.close(fig)
    if run is not None and run.get("chunk_memory") is not None:  # the user's text ("64M") or a byte count: bytes
        from multimodal_ip.memory import parse_size

        run = {**run, "chunk_memory": parse_size(run["chunk_memory"], allow_zero=True)}
    (outdir / "hessian.json").write_text(json.dumps({**summary, **({"run": run} if run is not None else {})}, indent=2))
    lines = [f"{name}: {s['n_eigenvalues']} eigenvalues, largest {s['largest']:.3g}, "
             f"condition (positive part) {s['condition_positive']:.3g}, "
             f"fraction < 1e-6 * largest {s['fraction_below_1e-6']:.3f}" for name, s in summary.items()]
    lines.append(f"wrote {outdir}/eigenvalues.png, landscapes.png, hessian.json")
    return "\n".join(lines)
