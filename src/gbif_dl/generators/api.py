"""gbif-dl 0.1.1's ``gbif_dl.generators.api``: records and counts of an occurrence search.

``generate_urls`` is :func:`gbif_dl.api.generate_urls`; :func:`gbif_query_generator` and
:func:`gbif_count` take the search parameters as keywords, as 0.1.1 did (it passed them to
``pygbif``). The API is ``$GBIF_API_URL`` (or the public GBIF); ``api_url=`` also works.

Example:
    >>> import gbif_dl
    >>> gbif_dl.generators.api.generate_urls is gbif_dl.api.generate_urls
    True
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from gbif_dl.api import generate_urls
from gbif_dl.errors import ConfigError
from gbif_dl.records import MediaRecord

__all__ = ["gbif_count", "gbif_query_generator", "generate_urls"]


def _keywords_only(args: tuple[Any, ...], function: str) -> None:
    if args:
        raise ConfigError(
            f"{function}() takes the search parameters as keywords, such as speciesKey=5352251; "
            f"got positional {args!r}"
        )


def gbif_query_generator(
    page_limit: int = 300,
    mediatype: str = "StillImage",
    license_info: bool = True,
    one_media_per_occurrence: bool = True,
    label: str | None = None,
    subset: str | None = None,
    *args: Any,
    **kwargs: Any,
) -> Iterator[MediaRecord]:
    """Every media record of the occurrence search ``kwargs``, with ``subset`` set.

    Args:
        page_limit: 0.1.1's page size; the client chooses its own pages.
        mediatype, license_info, one_media_per_occurrence, label: as in
            :func:`gbif_dl.api.generate_urls`.
        subset: the ``subset`` of every record.
        **kwargs: GBIF occurrence search parameters (a list means OR), and ``api_url``.

    Example:
        >>> items = gbif_query_generator(label="speciesKey", speciesKey=5352251)  # doctest: +SKIP
        >>> next(items)["label"]  # doctest: +SKIP
        '5352251'
    """
    _keywords_only(args, "gbif_query_generator")
    del page_limit
    api_url = kwargs.pop("api_url", None)
    records = generate_urls(
        kwargs,
        label=label,
        mediatype=mediatype,
        license_info=license_info,
        one_media_per_occurrence=one_media_per_occurrence,
        api_url=api_url,
    )
    for record in records:
        record["subset"] = subset
        yield record


def gbif_count(mediatype: str = "StillImage", *args: Any, **kwargs: Any) -> int:
    """The number of occurrences with ``mediatype`` media matching the search ``kwargs``.

    Example:
        >>> gbif_count(speciesKey=5352251)  # doctest: +SKIP
        2193
    """
    from gbif_dl._aio import run_sync
    from gbif_dl.gbif.client import GbifClient
    from gbif_dl.gbif.params import validate_query
    from gbif_dl.sampling.filters import normalize_mediatype

    _keywords_only(args, "gbif_count")
    api_url = kwargs.pop("api_url", None)
    query = validate_query({**kwargs, "mediaType": normalize_mediatype(mediatype)})

    async def count() -> int:
        async with GbifClient(api_url) as client:
            return await client.count(query)

    return run_sync(count())
