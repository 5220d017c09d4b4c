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

    def then(self, later: "History", iteration=None, time_s=None) -> "History":
        """This history followed by ``later``'s rows after its row 0 (which repeats where ``later`` started), their
        ``iteration`` and ``time_s`` shifted by ``iteration`` and ``time_s`` (default: this history's last row's).

        Parameters
        ----------
        later : :class:`History`
            The next stage's or round's history.
        iteration, time_s : :obj:`int` and :obj:`float`, optional
            Offsets of ``later``'s numbering and clock.

        Returns
        -------
        :class:`History`
        """
        last = self.last()
        n = last.get("iteration", 0) if iteration is None else iteration
        t = last.get("time_s", 0.0) if time_s is None else time_s
        return History(self.rows + [dict(r, iteration=r["iteration"] + n, time_s=r["time_s"] + t)
                                    for r in later.rows[1:]])

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
