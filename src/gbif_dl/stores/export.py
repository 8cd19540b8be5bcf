"""gbif-dl 0.1.1's ``gbif_dl.stores.export`` (also ``gbif_dl.export``): items to a CSV file.

Example:
    >>> import tempfile, pathlib
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "items.csv"
    >>> to_csv([{"url": "http://h/a.jpg", "label": "1", "gbifID": "7"}], path)
    1
    >>> path.read_text().splitlines()[0]
    'url,basename,label,subset,publisher,license,rightsHolder'
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from gbif_dl.stores import MediaData
from gbif_dl.writers.cells import SafeCsvWriter

__all__ = ["to_csv"]


def to_csv(
    generator: Iterable[Mapping[str, Any]],
    filename: str | os.PathLike[str],
    fieldnames: Sequence[str] | None = None,
) -> int:
    """Write the items of ``generator`` to the CSV file ``filename``, one row per item.

    Args:
        generator: items (dicts), e.g. from :func:`gbif_dl.api.generate_urls`.
        filename: the CSV file (overwritten).
        fieldnames: the columns (0.1.1 passed them); default the 0.1.1 item's keys
            (``url, basename, label, subset, publisher, license, rightsHolder``). Other keys of
            an item are left out; a missing one is an empty cell. Spare items
            (``spare: True``, :mod:`gbif_dl.sampling.spares`) are left out too: a CSV has no
            column to say that a URL is only a stand-in, so it lists the sample itself.

    Returns:
        The number of rows written.

    Example:
        >>> to_csv([], os.devnull, fieldnames=["url"])
        0
    """
    columns = list(fieldnames) if fieldnames is not None else list(MediaData.__annotations__)
    rows = 0
    with open(filename, "w", newline="", encoding="utf-8") as handle:
        writer = SafeCsvWriter(
            handle, lineterminator="\r\n"
        )  # as 0.1.1 (csv's default); cells a spreadsheet would run as formulas are escaped
        writer.writerow(columns)
        for item in generator:
            if item.get("spare"):
                continue
            writer.writerow([item.get(name) for name in columns])
            rows += 1
    return rows
