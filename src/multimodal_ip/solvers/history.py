__all__ = ["History"]

import numpy as np


class History:
    """One row per iteration; columns ``iteration, time_s, objective, objective_<term>, grad_norm, error_<var>``.

    Parameters
    ----------
    rows : :obj:`list` of :obj:`dict`, optional
        Rows to start from (a resumed run's history).
    """

    def __init__(self, rows=None):
        self.rows = list(rows or [])

    def append(self, row: dict) -> None:
        self.rows.append(dict(row))

    @property
    def columns(self) -> list:
        cols: list[str] = []
        for r in self.rows:
            cols.extend(k for k in r if k not in cols)
        return cols

    def __getitem__(self, column) -> np.ndarray:
        return np.array([r.get(column, np.nan) for r in self.rows], dtype=float)

    def __len__(self) -> int:
        return len(self.rows)

    def as_arrays(self) -> dict:
        return {c: self[c] for c in self.columns}

    @classmethod
    def from_arrays(cls, arrays: dict) -> "History":
        n = len(next(iter(arrays.values()))) if arrays else 0
        return cls([{k: float(v[i]) for k, v in arrays.items()} for i in range(n)])

    def last(self) -> dict:
        return self.rows[-1] if self.rows else {}
