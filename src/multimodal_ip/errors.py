"""Exception hierarchy: each error is also the builtin a caller would expect."""

__all__ = [
    "MultimodalIPError",
    "ShapeError",
    "DtypeError",
    "UnknownVariableError",
    "UnknownPluginError",
    "PluginLoadError",
    "ConformanceError",
    "DataError",
    "ConfigError",
    "SolverError",
]


class MultimodalIPError(Exception):
    """Base class of every error raised by multimodal_ip."""


class ShapeError(MultimodalIPError, ValueError):
    """An array does not have the shape an operator, variable or file expects."""


class DtypeError(MultimodalIPError, TypeError):
    """An array does not have the dtype an operator, variable or file expects."""


class UnknownVariableError(MultimodalIPError, KeyError):
    """A variable name is not part of the :class:`VariableSpace`."""

    def __str__(self) -> str:  # KeyError quotes its argument; keep the message readable
        return str(self.args[0]) if self.args else ""


class UnknownPluginError(MultimodalIPError, LookupError):
    """No modality, solver, regularizer or importer is registered under a name."""


class PluginLoadError(MultimodalIPError, RuntimeError):
    """A plugin failed to import or to register, or two plugins claim one name."""


class ConformanceError(MultimodalIPError, AssertionError):
    """An operator, Jacobian or gradient fails a conformance check (adjoint, Taylor)."""


class DataError(MultimodalIPError, ValueError):
    """A data file is missing, corrupt, or holds values that break the schema."""


class ConfigError(MultimodalIPError, ValueError):
    """A run configuration (flag or TOML value) is invalid."""


class SolverError(MultimodalIPError, RuntimeError):
    """A solver cannot run on a problem (missing capability) or diverged (NaN)."""
