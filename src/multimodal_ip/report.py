"""Figures and tables for results (matplotlib, Agg backend; optional dependency)."""

__all__ = ["error_table", "plot_histories", "plot_reconstructions", "markdown_table", "plugin_reports",
           "figure_backend"]

import warnings
from pathlib import Path

import numpy as np

from .errors import ConfigError


def figure_backend():
    """matplotlib.pyplot on the Agg backend (for report plugins too); a clear error without matplotlib.

    Returns
    -------
    plt : module
        ``matplotlib.pyplot``.

    Raises
    ------
    ConfigError
        matplotlib is not installed.
    """
    return _plt()


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
    """Deprecated: moved to :func:`mmip_ptychography.best_phase_error` (a far-field measure; the core never imports
    a plugin, so this copy stays until its users have moved). Relative error of a complex array after the best
    global phase factor."""
    warnings.warn("multimodal_ip.report.best_phase_error moved to mmip_ptychography.best_phase_error",
                  DeprecationWarning, stacklevel=2)
    c = np.vdot(estimate, truth)
    phase = c / abs(c) if abs(c) > 0 else 1.0
    return float(np.linalg.norm(estimate * phase - truth) / np.linalg.norm(truth))


def markdown_table(header, rows) -> str:
    """A GitHub-flavoured Markdown table.

    Parameters
    ----------
    header : sequence of :obj:`str`
        Column titles.
    rows : sequence of sequence
        Cells of each row (written with :obj:`str`).

    Returns
    -------
    table : :obj:`str`
        The table, one line per row, without a final newline.
    """
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def error_table(results: dict, truth: dict | None, variables=None) -> tuple[list, list]:
    """``(header, rows)``: per method, the final relative error of each variable with a truth (``variables``: which,
    default every variable of the first result that has a truth), the total and the time.

    Parameters
    ----------
    results : :obj:`dict`
        ``{method: Result}``, each with a ``history`` table (columns ``error_<variable>``, ``error_total``,
        ``time_s``).
    truth : :obj:`dict` or :obj:`None`
        ``{variable: array}``; ``None``: no error columns.
    variables : sequence of :obj:`str`, optional
        Variables to report (default every variable of the first result).

    Returns
    -------
    header : :obj:`list` of :obj:`str`
        Column titles.
    rows : :obj:`list` of :obj:`list`
        One row per method: its name, the error of each variable at the returned iterate (the last one, or the
        best-validation one with a stopping rule; ``nan`` if not recorded), the total error and the wall time in
        seconds.
    """
    first = next(iter(results.values()))
    names = [n for n in (variables or first.arrays) if truth is not None and n in truth]
    header = ["method", *(f"error {n}" for n in names), "error total", "time (s)"]
    rows = []
    for method, res in results.items():
        # the returned iterate's errors (with --stop validation the best-validation one, not the last iterate run)
        row = res.returned_row()
        rows.append([method, *(row.get(f"error_{n}", np.nan) for n in names), row.get("error_total", np.nan),
                     res.history["time_s"][-1]])
    return header, rows


def plugin_reports(arrays: dict, start: dict, truth: dict | None, outdir: Path, registry=None,
                   problems: dict | None = None, dataset=None) -> dict:
    """What every report plugin adds for these results: ``{"columns": {method: {col: value}}, "tables":
    [(title, header, rows)], "figures": [(title, file name)]}``. A report plugin (hook ``mmip_register_reports``)
    may implement ``columns(arrays, truth)``, ``tables(arrays, start, truth)`` and
    ``figures(arrays, start, truth, outdir)``; each sees ``{method: {variable: array}}`` and decides itself whether
    the results concern it (e.g. by the variable names). A ``figures`` that takes a keyword ``problems`` also gets
    ``{method: JointProblem}`` when the problems are at hand (``mmip compare``; ``None`` for a result file alone):
    the measured data and the forward models, to draw data against the fits. A ``tables`` or ``figures`` that takes
    a keyword ``dataset`` gets the input :class:`~multimodal_ip.io.Dataset` when it is at hand (``mmip report``
    reads the file named in the result's configuration; ``None`` otherwise): its terms' arrays and attributes
    (a probe, a photon scale) and its truth.

    Parameters
    ----------
    arrays : :obj:`dict`
        ``{method: {variable: array}}``: the results.
    start : :obj:`dict`
        ``{variable: array}``: the start point.
    truth : :obj:`dict` or :obj:`None`
        ``{variable: array}``, when known.
    outdir : :obj:`pathlib.Path`
        Folder the figures are written into.
    registry : :class:`~multimodal_ip.plugins.Registry`, optional
        Where the report plugins are looked up (default the installed plugins).
    problems : :obj:`dict`, optional
        ``{method: JointProblem}``, passed to a ``figures`` that takes it.
    dataset : :class:`~multimodal_ip.io.Dataset`, optional
        The input dataset, passed to a ``tables`` or ``figures`` that takes it.

    Returns
    -------
    reports : :obj:`dict`
        ``{"columns": ..., "tables": ..., "figures": ...}`` as above.
    """
    from .plugins import get_registry

    registry = registry or get_registry()
    out: dict = {"columns": {m: {} for m in arrays}, "tables": [], "figures": []}
    for name in registry.names("report"):
        rep = registry.get("report", name)
        if hasattr(rep, "columns"):
            for method, cols in (rep.columns(arrays, truth) or {}).items():
                out["columns"].setdefault(method, {}).update(cols)
        if hasattr(rep, "tables"):
            out["tables"].extend(rep.tables(arrays, start, truth, **_offered(rep.tables, dataset=dataset)) or [])
        if hasattr(rep, "figures"):
            out["figures"].extend(rep.figures(arrays, start, truth, outdir,
                                              **_offered(rep.figures, problems=problems, dataset=dataset)) or [])
    return out


def _offered(method, **keywords) -> dict:
    """The ``keywords`` that ``method`` takes (a report plugin written before one was offered keeps working)."""
    import inspect

    takes = inspect.signature(method).parameters
    return {k: v for k, v in keywords.items() if k in takes}


def plot_histories(histories: dict, path) -> Path:
    """Log-log objective and relative error versus iteration, one line per method.

    Parameters
    ----------
    histories : :obj:`dict`
        ``{method: history table}`` with columns ``iteration``, ``objective`` and optionally ``error_total``.
    path : :obj:`str` or :obj:`pathlib.Path`
        Image file to write (format from the suffix).

    Returns
    -------
    path : :obj:`pathlib.Path`
        The file written.
    """
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


def _maps(a) -> list:
    """2-D images of one variable: the array itself, each slice of a stack, the modulus of a complex one."""
    a = np.asarray(a)
    a = np.abs(a) if np.iscomplexobj(a) else a
    if a.ndim == 2:
        return [("", a)]
    if a.ndim == 3 and a.shape[0] <= 8:
        return [(f"[{i}]", a[i]) for i in range(a.shape[0])]
    return []


def plot_reconstructions(arrays: dict, truth: dict | None, path, variables=None) -> Path | None:
    """Every image-like variable (2-D, or a short stack of 2-D maps) per method (rows), the truth first and the
    error maps beside when a truth is known. ``None`` when no variable is image-like.

    Parameters
    ----------
    arrays : :obj:`dict`
        ``{method: {variable: array}}`` (complex variables are shown as their modulus).
    truth : :obj:`dict` or :obj:`None`
        ``{variable: array}``; with every shown variable in it, a truth row and error maps are added.
    path : :obj:`str` or :obj:`pathlib.Path`
        Image file to write.
    variables : sequence of :obj:`str`, optional
        Variables to show (default every image-like variable of the first method).

    Returns
    -------
    path : :obj:`pathlib.Path` or :obj:`None`
        The file written, or ``None`` (nothing written) when no variable is image-like.
    """
    plt = _plt()
    first = next(iter(arrays.values()))
    names = [n for n in (variables or first) if _maps(first[n])]
    if not names:
        return None
    show_err = truth is not None and all(n in truth for n in names)
    methods = ([("truth", truth)] if show_err else []) + list(arrays.items())
    cols = sum(len(_maps(first[n])) for n in names)
    fig, axes = plt.subplots(len(methods), cols * (2 if show_err else 1),
                             figsize=(2.6 * cols * (2 if show_err else 1), 2.5 * len(methods)), squeeze=False)
    for i, (method, a) in enumerate(methods):
        k = 0
        for n in names:
            tmaps = _maps(truth[n]) if show_err and truth is not None else []
            for j, (suffix, m) in enumerate(_maps(a[n])):
                ax = axes[i, k]
                scale = {"vmin": float(tmaps[j][1].min()), "vmax": float(tmaps[j][1].max())} if tmaps else {}
                ax.imshow(m, cmap="gray", **scale)  # on the truth's scale when it is known
                ax.set_title(f"{method}: {n}{suffix}", fontsize=8)
                ax.axis("off")
                if tmaps:
                    ax = axes[i, cols + k]
                    err = np.abs(m - tmaps[j][1])
                    ax.imshow(err, cmap="magma", vmin=0, vmax=max(float(np.ptp(tmaps[j][1])), 1e-12) / 2)
                    ax.set_title(f"|error| {n}{suffix}", fontsize=8)
                    ax.axis("off")
                k += 1
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return Path(path)
