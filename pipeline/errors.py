"""One error type for bad input, so every reader reports problems the same way."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence


class DataError(ValueError):
    """Bad input: names the file, the field and the first offending rows.

    >>> raise DataError("items.parquet", "title", "is empty", rows=[3, 7])
    Traceback (most recent call last):
    ...
    pipeline.errors.DataError: items.parquet: field 'title' is empty (first offending rows: [3, 7])
    """

    def __init__(self, path: str | Path, field: str, problem: str, rows: Sequence[Any] | None = None):
        self.path, self.field, self.problem = str(path), field, problem
        self.rows = list(rows)[:5] if rows is not None else []
        where = f" (first offending rows: {self.rows})" if self.rows else ""
        super().__init__(f"{self.path}: field '{field}' {problem}{where}")


def first_rows(mask: Any, limit: int = 5) -> list[int]:
    """Row positions where a boolean mask (numpy / pandas) is true, at most `limit`."""
    import numpy as np

    return [int(i) for i in np.flatnonzero(np.asarray(mask))[:limit]]
