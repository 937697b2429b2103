"""A CSV artifact parsed once, with the per-column figures the checks recompute from it.

Several checks recompute from the same files: `data_versioned` counts missing values and takes
means, `monitored` bins every feature for PSI and sorts it for KS, `evaluated` compares groups and
KS statistics, `lab_improved` intersects keys. A `Table` parses the CSV once and computes each of
those figures once, on first use (`Table.column`, `Table.derive`).

Tables are also shared between the learners one batch worker grades, keyed by the sha256 of the
file's bytes and how it is parsed (`parse`): learners who ran the same notebook on the same data
hand in byte-identical split files, and the same bytes always parse to the same table. Only
successful parses are shared, so every refusal still names the learner's own file. A table and
everything it derives is read-only; the cache holds at most `CACHE_BYTES` of source files.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections import Counter, OrderedDict
from collections.abc import Callable
from functools import cached_property
from typing import Any

import numpy as np

from checker.errors import Invalid

# Of source file bytes, across the tables kept for reuse; CHECKER_TABLE_CACHE_MB=0 turns sharing off.
CACHE_BYTES = int(float(os.environ.get("CHECKER_TABLE_CACHE_MB", "64")) * 1_000_000)
MAX_PAIRS = 64  # figures of one column against others (PSI, KS), remembered per column
_CACHE: OrderedDict[tuple, Table] = OrderedDict()
_CACHED_BYTES = 0


class Column:
    """One column, with the figures checks recompute from it, each computed on first use."""

    def __init__(self, series, identity: tuple | None = None) -> None:
        import pandas as pd

        self.series = series
        self.identity = identity  # (sha256 of the file, how it was parsed, column name) or None
        self._pairs: dict = {}
        # Numeric as the course means it: pandas reads numbers (booleans are categories).
        self.numeric = pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(
            series
        )

    def __len__(self) -> int:
        return len(self.series)

    def versus(self, other: Column, figure: Callable[[Column, Column], Any]) -> Any:
        """`figure(self, other)`, computed once per pair of table columns (PSI, KS, shared keys).

        Remembered by the other column's identity (its file's sha256 and its name), never by
        reference, and only for the last `MAX_PAIRS` pairs: a split shared by a whole cohort
        keeps no other learner's table alive."""
        if self.identity is None or other.identity is None:
            return figure(self, other)
        key = (figure.__module__, figure.__qualname__, other.identity)
        if key not in self._pairs:
            if len(self._pairs) >= MAX_PAIRS:
                del self._pairs[next(iter(self._pairs))]
            self._pairs[key] = figure(self, other)
        return self._pairs[key]

    @cached_property
    def floats(self) -> np.ndarray:
        """The values as floats, missing values as NaN (numeric columns only)."""
        return _frozen(self.series.to_numpy(dtype=float, na_value=np.nan, copy=True))

    @cached_property
    def finite(self) -> np.ndarray:
        """The finite values, sorted: the sample PSI bins and KS compares (+-inf count as missing)."""
        values = self.floats
        return _frozen(np.sort(values[np.isfinite(values)]))

    @cached_property
    def present(self) -> np.ndarray:
        """The non-missing values as floats (infinities kept), in file order."""
        values = self.floats
        return _frozen(values[~np.isnan(values)])

    @cached_property
    def distinct(self) -> np.ndarray:
        """The distinct non-missing values, sorted: numbers as numbers, anything else as text."""
        values = self.series.dropna().to_numpy()
        if values.dtype.kind not in "iuf":
            values = values.astype(str)
        return _frozen(np.unique(values))

    @cached_property
    def _tally(self) -> Counter:
        return Counter(self.series.to_numpy(dtype=object))

    @cached_property
    def missing(self) -> int:
        """How many values are missing, as `pandas.isna` counts them."""
        if self.numeric:
            return int(np.isnan(self.floats).sum())
        import pandas as pd

        return sum(n for value, n in self._tally.items() if pd.isna(value))

    @cached_property
    def counts(self) -> dict[str, int]:
        """Rows per category as text (`str(value)`), missing values left out."""
        import pandas as pd

        counts: dict[str, int] = {}
        for value, n in self._tally.items():
            if not pd.isna(value):
                text = str(value)
                counts[text] = counts.get(text, 0) + n
        return counts


class Table:
    """A parsed CSV file: its pandas frame (read-only) and its columns' figures."""

    def __init__(self, frame, sha256: str, how: str = "split") -> None:
        self.frame = frame
        self.sha256 = sha256  # of the file's bytes as stored (compressed or not)
        self.how = how
        self._columns: dict[str, Column] = {}
        self._derived: dict[Any, Any] = {}
        self._size = 0  # bytes of the source file, while the shared cache holds this table

    def __len__(self) -> int:
        return len(self.frame)

    def column(self, name: str) -> Column:
        """The column `name` (a KeyError when the file has no such column)."""
        if name not in self._columns:
            self._columns[name] = Column(self.frame[name], (self.sha256, self.how, name))
        return self._columns[name]

    def derive(self, key: Any, compute: Callable[[], Any]) -> Any:
        """`compute()` once per key for this table: for figures that depend on its bytes alone."""
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]


def _frozen(values: np.ndarray) -> np.ndarray:
    values.flags.writeable = False
    return values


def parse(
    raw: bytes,
    rel: str,
    how: str = "split",
    *,
    decode: Callable[[bytes], bytes] | None = None,
    digest: str | None = None,
    **read_csv: Any,
) -> Table:
    """The table of a CSV file's bytes; `Invalid` naming `rel` when it cannot be read.

    `decode` turns the file's bytes into CSV text (a capped gunzip), run only when the table is
    not already known; `digest` is the sha256 of `raw` when the caller has it. `how` names the
    `decode` and `read_csv` options (the same name must always mean the same options): a table
    parsed one way is shared only with files parsed the same way.
    """
    import pandas as pd

    digest = digest or hashlib.sha256(raw).hexdigest()
    key = (digest, how)
    table = _CACHE.get(key)
    if table is not None:
        _CACHE.move_to_end(key)
        return table
    text = decode(raw) if decode else raw
    try:
        frame = pd.read_csv(io.BytesIO(text), low_memory=False, **read_csv)
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else exc.__class__.__name__
        raise Invalid(f"{rel}: expected a readable CSV with a header row, found: {first}") from None
    table = Table(frame, digest, how)
    _remember(key, table, len(raw))
    return table


def _remember(key: tuple, table: Table, size: int) -> None:
    global _CACHED_BYTES
    if size > CACHE_BYTES or CACHE_BYTES <= 0:
        return
    _CACHE[key] = table
    table._size = size
    _CACHED_BYTES += size
    while _CACHED_BYTES > CACHE_BYTES:
        _, oldest = _CACHE.popitem(last=False)
        _CACHED_BYTES -= oldest._size


def clear_cache() -> None:
    """Forget every shared table (tests; a long-lived process that wants its memory back)."""
    global _CACHED_BYTES
    _CACHE.clear()
    _CACHED_BYTES = 0
