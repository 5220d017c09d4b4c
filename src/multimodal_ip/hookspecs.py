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

    ``modality`` satisfies the contract of :mod:`multimodal_ip.modality`: the core calls
    ``build_term(td, space, xp=..., **options) -> DataTerm`` (``td`` a :class:`~multimodal_ip.io.TermData` of one
    ``/terms/<name>`` group, ``space`` the problem's :class:`~multimodal_ip.VariableSpace`, ``options`` only those
    listed in the modality's ``options`` plus ``dtype``) and the conformance kit calls
    ``conformance_cases(rng) -> iterable of (case_name, operator, x)``. Optional capabilities (``split_axes``,
    ``balance_role``, ``variables(td)``, ``calibration(td)``, ``example_term(rng)``, ...) are read with their
    defaults by :func:`multimodal_ip.modality.capabilities`; a modality that breaks the contract is listed by
    ``mmip plugins`` with the reason and not used.

    :param register: callback ``register(name, modality)``.

    .. versionadded:: 0.1
    """


@hookspec
def mmip_register_solvers(register: RegisterFn) -> None:
    """Register solvers: ``register(name, solve)`` with
    ``solve(problem, x0, resume_state=None, **options) -> Result`` (``Result.status`` one of
    :data:`multimodal_ip.solvers.STATUSES`). An optional ``solve.options = {name: default}``
    (:func:`multimodal_ip.solvers.declare_options`) lets the CLI check option names and types before a run.

    :param register: callback ``register(name, solve)``.

    .. versionadded:: 0.1
    """


@hookspec
def mmip_register_regularizers(register: RegisterFn) -> None:
    """Register regularizer classes: ``register(name, cls)``; the core calls ``cls(variables, weight=strength,
    **settings)``: ``variables`` a tuple of variable names, ``weight`` only when the run file or flag gives a
    strength, ``settings`` the other keys of the run file's entry (checked against the signature of ``cls`` before
    the run). Subclass :class:`multimodal_ip.regularizers.Regularizer` (``value``, ``value_and_gradient``,
    ``hessian_vector`` when ``is_smooth``; ``prox`` when ``has_prox``).

    :param register: callback ``register(name, cls)``.

    .. versionadded:: 0.1
    """


@hookspec
def mmip_register_importers(register: RegisterFn) -> None:
    """Register importers of facility formats: ``register(name, importer)`` with
    ``importer(path, context) -> TermData``; optional attributes ``flag`` (``mmip import --<flag> FILE``), ``help``,
    ``order`` (lower runs first; ``context`` carries what earlier importers set) and
    ``options = {name: {"type", "default", "help"}}`` (extra flags, their values in ``context``), and the offer
    ``read_start(path, context) -> {variable: array} | None``: start values from a file of its format
    (``mmip reconstruct --start FILE``; ``None`` for a file it does not read; ``context`` holds ``variables``,
    ``{name: (shape, dtype)}`` of the problem, ``dataset``, ``coupling``, ``allow_external`` and ``budget``, the
    ``multimodal_ip.safety.MemoryBudget`` to take before reading).

    :param register: callback ``register(name, importer)``.

    .. versionadded:: 0.1
    """


@hookspec
def mmip_register_exporters(register: RegisterFn) -> None:
    """Register exporters of results to facility formats (``mmip export RESULT --format <name> -o OUT``):
    ``register(name, exporter)`` with ``exporter(result, context, path)``: ``result`` as
    :func:`multimodal_ip.io.load_result` returns it, ``context`` holding ``result`` (its path), ``dataset`` (the
    run's input :class:`~multimodal_ip.io.Dataset`, ``None`` when not found), ``data`` (its path) and
    ``allow_external``;
    it writes the file at ``path``, a fresh temporary beside ``-o`` that the core renames over ``-o`` once the
    exporter returns (removed when it fails). A result it cannot export raises a
    :class:`~multimodal_ip.errors.MultimodalIPError` (one line). Optional attribute ``help``: its line in
    ``mmip export --help``.

    :param register: callback ``register(name, exporter)``.

    .. versionadded:: 0.3
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
    ``simulate(seed=int, noise=float, **parameters) -> Dataset``. The optional attribute
    ``simulate.parameters = {keyword: {"type", "help", "flag", "choices"}}`` declares the keywords, which become the
    flags of ``mmip simulate`` (``type`` int: >= 1, float: finite >= 0, list: comma-separated); the optional
    attribute ``simulate.help`` is its one line in ``mmip simulate --help`` (default: the first docstring line).

    :param register: callback ``register(name, simulate)``.

    .. versionadded:: 0.1
    """


@hookspec
def mmip_register_commands(register: RegisterFn) -> None:
    """Register commands of ``mmip``: ``register(name, command)`` adds ``mmip <name>``, with ``command`` a
    :class:`multimodal_ip.cli.Command` (or any object with its attributes): ``help`` (one line), ``add_arguments(
    parser)``, ``run(args) -> int`` (the exit code; bad input raises a
    :class:`~multimodal_ip.errors.MultimodalIPError`: one line, exit 2) and optional ``folder_files`` (``-o`` is a
    folder holding these files, each checked before any work). The plugins load only when a command that is not
    built in is named; a name of a built-in command is refused (``mmip plugins`` says why).

    :param register: callback ``register(name, command)``.

    .. versionadded:: 0.2
    """
