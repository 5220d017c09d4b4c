__all__ = ["Dataset", "TermData", "load_dataset", "save_dataset", "build_problem", "BuildOptions", "save_result",
           "load_result", "atomic_h5"]

from .dataset import Dataset, TermData, atomic_h5, load_dataset, save_dataset
from .problem_builder import BuildOptions, build_problem
from .results import load_result, save_result
