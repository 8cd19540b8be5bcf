"""gbif-dl 0.1.1's ``gbif_dl.generators.dwca``: records of a Darwin Core Archive.

``generate_urls``, ``doi_to_gbif_key`` and ``is_doi`` are :mod:`gbif_dl.dwca`'s;
:func:`dwca_generator` reads a local archive with 0.1.1's defaults (label ``speciesKey``).

Example:
    >>> is_doi("10.15468/dl.hx3uzz"), is_doi("0022697-200613084148143")
    (True, False)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

from gbif_dl.dwca import doi_to_gbif_key, generate_urls, is_doi
from gbif_dl.records import MediaRecord

__all__ = ["doi_to_gbif_key", "dwca_generator", "generate_urls", "is_doi"]


def dwca_generator(
    dwca_path: str | os.PathLike[str],
    label: str | None = "speciesKey",
    mediatype: str | None = "StillImage",
    delete: bool = False,
) -> Iterator[MediaRecord]:
    """Media records of the local archive ``dwca_path``, one media per occurrence.

    Args:
        dwca_path: a GBIF Darwin Core Archive (zip).
        label: the occurrence column used as label (``None``: the whole occurrence row).
        mediatype: the multimedia type to keep.
        delete: delete the archive once every record was read (as 0.1.1 did; today's
            :func:`gbif_dl.dwca.generate_urls` never deletes a file it was given).

    Example:
        >>> items = dwca_generator("0022697-200613084148143.zip")  # doctest: +SKIP
        >>> next(items)["label"]  # doctest: +SKIP
        '3189866'
    """
    yield from generate_urls(dwca_path, label=label, mediatype=mediatype)
    if delete:
        Path(dwca_path).unlink(missing_ok=True)
