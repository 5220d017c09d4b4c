"""Hook specifications and the markers a plugin imports (``from multimodal_ip import hookimpl``).

A whole plugin module::

    from multimodal_ip import hookimpl

    @hookimpl
    def mmip_register_modalities(register):
        register("toy", make_toy_term)

and in its ``pyproject.toml``::

    [project.entry-points.multimodal_ip]
    toy = "toy_package.plugin"
"""

__all__ = ["hookspec", "hookimpl", "PROJECT"]

from collections.abc import Callable

import pluggy

PROJECT = "multimodal_ip"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)

RegisterFn = Callable[[str, object], None]


@hookspec
def mmip_register_modalities(register: RegisterFn) -> None:
    """Register modalities: call ``register(name, modality)`` once per modality.

    ``modality`` is an object with ``build_term(group, space, **options) -> DataTerm``
    (a term from an HDF5 group of the dataset schema), ``variables(group) -> list[Variable]``
    and ``conformance_cases(rng) -> iterable of (operator, x)`` for the conformance kit.

    :param register: callback ``register(name, modality)``.

    .. versionadded:: 0.1
    """


@hookspec
def mmip_register_solvers(register: RegisterFn) -> None:
    """Register solvers: ``register(name, solve)`` with
    ``solve(problem, x0, **options) -> Result``.

    :param register: callback ``register(name, solve)``.

    .. versionadded:: 0.1
    """


@hookspec
def mmip_register_regularizers(register: RegisterFn) -> None:
    """Register regularizer classes: ``register(name, cls)``; ``cls(variables, **options)``.

    :param register: callback ``register(name, cls)``.

    .. versionadded:: 0.1
    """


@hookspec
def mmip_register_importers(register: RegisterFn) -> None:
    """Register importers of facility formats: ``register(name, importer)``.

    :param register: callback ``register(name, importer)``.

    .. versionadded:: 0.1
    """


@hookspec
def mmip_register_reports(register: RegisterFn) -> None:
    """Register report extras for ``mmip compare`` and ``mmip report``: ``register(name, report)``.

    ``report`` may implement any of ``columns(arrays, truth) -> {method: {column: value}}`` (extra columns of the
    error table), ``tables(arrays, start, truth) -> [(title, header, rows)]`` and
    ``figures(arrays, start, truth, outdir) -> [(title, file_name)]``; ``arrays`` is ``{method: {variable:
    array}}``, ``start`` the start values of refined calibration unknowns, ``truth`` the dataset's truth or
    ``None``. A report returns nothing for results that do not concern it.

    .. versionadded:: 0.2
    """


@hookspec
def mmip_register_simulations(register: RegisterFn) -> None:
    """Register simulated cases for ``mmip simulate``: ``register(name, simulate)`` with
    ``simulate(rng, **overrides) -> Dataset``.

    :param register: callback ``register(name, simulate)``.

    .. versionadded:: 0.1
    """
