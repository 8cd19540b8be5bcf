"""CSV cells a spreadsheet never runs: the one escaping rule of every CSV file gbif-dl writes.

Spreadsheets (Excel, LibreOffice, Google Sheets) evaluate a cell that starts with ``=``, ``+``,
``-`` or ``@`` as a formula (``=HYPERLINK(...)`` in a ``rightsHolder`` would run when the
attribution file is opened), and some strip a leading tab or carriage return first. Following
the OWASP rule (https://owasp.org/www-community/attacks/CSV_Injection), such a cell is written
with a single quote in front: it then shows as text, and the quote tells a reader it was escaped.

Example:
    >>> spreadsheet_safe("=HYPERLINK(\\"http://x\\")")
    '\\'=HYPERLINK("http://x")'
    >>> spreadsheet_safe("Ann"), spreadsheet_safe(None)
    ('Ann', '')
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from typing import Any, TextIO

__all__ = ["FORMULA_STARTS", "SafeCsvWriter", "safe_row", "spreadsheet_safe"]

#: First characters that make a spreadsheet read a cell as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def spreadsheet_safe(value: Any) -> str:
    """``value`` as a CSV cell text (None: ``""``), with ``'`` in front when it starts with one
    of :data:`FORMULA_STARTS`.

    Example:
        >>> [spreadsheet_safe(v) for v in ("+1", "-x", "@a", "\\tb", "a=b", 5)]
        ["'+1", "'-x", "'@a", "'\\tb", 'a=b', '5']
    """
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


def safe_row(values: Iterable[Any]) -> list[str]:
    """Every cell of a CSV row through :func:`spreadsheet_safe`.

    Example:
        >>> safe_row(["a.jpg", "=1+1", None])
        ['a.jpg', "'=1+1", '']
    """
    return [spreadsheet_safe(value) for value in values]


class SafeCsvWriter:
    """A CSV writer (``\\n`` line ends unless told) whose every cell goes through
    :func:`spreadsheet_safe`; a row with a carriage return in a cell is written fully quoted, so
    a reader never splits it.

    Example:
        >>> import io
        >>> out = io.StringIO()
        >>> writer = SafeCsvWriter(out)
        >>> writer.writerow(["file", "rightsHolder"]); writer.writerow(["a.jpg", "=1+1"])
        >>> writer.writerow(["b.jpg", "x\\ry"])
        >>> out.getvalue().splitlines()
        ['file,rightsHolder', "a.jpg,'=1+1", '"b.jpg","x', 'y"']
    """

    def __init__(self, out: TextIO, *, lineterminator: str = "\n") -> None:
        self._plain = csv.writer(out, lineterminator=lineterminator)
        self._quoted = csv.writer(out, lineterminator=lineterminator, quoting=csv.QUOTE_ALL)

    def writerow(self, values: Iterable[Any]) -> None:
        """Write one row of escaped cells."""
        cells = safe_row(values)
        writer = self._quoted if any("\r" in cell for cell in cells) else self._plain
        writer.writerow(cells)
