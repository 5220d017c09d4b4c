__all__ = ["Dataset", "TermData", "load_dataset", "save_dataset", "build_problem", "BuildOptions", "save_result",
           "load_result", "atomic_h5"]

from typing import TYPE_CHECKING

from multimodal_ip._lazy import lazy_exports

if TYPE_CHECKING:  # type checkers see the names; at run time __getattr__ imports them on first use
    from .dataset import Dataset, TermData, atomic_h5, load_dataset, save_dataset
    from .problem_builder import BuildOptions, build_problem
    from .results import load_result, save_result

#: where each public name lives, imported on first use: a module that needs only ``TermData`` loads no pylops
#: (``mmip plugins`` imports no pylops or scipy: docs/architecture.md, "Start-up time")
_LAZY = {"Dataset": "dataset", "TermData": "dataset", "atomic_h5": "dataset", "load_dataset": "dataset",
         "save_dataset": "dataset", "BuildOptions": "problem_builder", "build_problem": "problem_builder",
         "load_result": "results", "save_result": "results"}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY, __all__)
