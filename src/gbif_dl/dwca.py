"""Media records from a GBIF Darwin Core Archive download, compatible with gbif-dl 0.1.

``identifier`` may be a GBIF download key, a DOI in any common form, the URL of a zip or a
local path. Archives are cached under ``dwca_root_path`` (default: the user's cache directory)
and parsed as a stream with bounded memory; see :mod:`gbif_dl.sources.archive`.

Example:
    >>> import gbif_dl
    >>> doi = "10.15468/dl.vnm42s"
    >>> urls = gbif_dl.dwca.generate_urls(doi, label="speciesKey")  # doctest: +SKIP
    >>> stats = gbif_dl.io.download(urls, root="data")              # doctest: +SKIP

A new download from a search query (needs a GBIF account)::

    urls = gbif_dl.dwca.request({"taxonKey": 212, "year": "2000,2020"}, label="speciesKey",
                                user="me", password="...")
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from gbif_dl.errors import ConfigError
from gbif_dl.options import SamplingOptions
from gbif_dl.records import MediaRecord
from gbif_dl.sampling.spares import DEFAULT_SPARES, SampledItems
from gbif_dl.sources.archive import ArchiveSource, ArchiveStats, create_download, resolve_archive
from gbif_dl.sources.archive.resolve import (
    TOO_MANY_DOWNLOADS_WAIT_S,
    doi_to_gbif_key,
    is_doi,
)

__all__ = ["TOO_MANY_DOWNLOADS_WAIT_S", "doi_to_gbif_key", "generate_urls", "is_doi", "request"]

logger = logging.getLogger(__name__)


def generate_urls(
    identifier: str | os.PathLike[str],
    dwca_root_path: str | os.PathLike[str] | None = None,
    label: str | None = None,
    mediatype: str | None = "StillImage",
    license_info: bool = True,
    one_media_per_occurrence: bool = True,
    delete: bool = False,
    *,
    split_streams_by: str | Sequence[str] | None = None,
    nb_samples: int | None = None,
    nb_samples_per_stream: int | None = None,
    weighted_streams: bool = False,
    seed: int | None = None,
    licenses: Iterable[str] | None = None,
    keep_unknown_licenses: bool = False,
    dedupe: bool = True,
    api_url: str | None = None,
    stats: ArchiveStats | None = None,
    spares: float = DEFAULT_SPARES,
) -> Iterator[MediaRecord]:
    """Media records (``url``, ``basename``, ``label``, licence, GBIF ids...) of an archive.

    Args:
        identifier: a GBIF download key, a DOI, the URL of a zip or a local zip path.
        dwca_root_path: where fetched archives are kept (default: the user's cache directory,
            ``$GBIF_DL_CACHE`` overrides); a complete archive there is not fetched again.
        label: the occurrence column whose value (a string) is the label (``speciesKey``,
            ``scientificName``, ``family``...); ``None`` gives the whole occurrence row.
        mediatype: the multimedia ``type`` to keep; ``None`` keeps all.
        license_info: include ``publisher``, ``license``, ``rightsHolder``, ``license_code``.
        one_media_per_occurrence: one media per occurrence, chosen reproducibly from ``seed``.
        delete: remove the fetched archive once every record was yielded (a local file given
            as ``identifier`` is never deleted).
        split_streams_by, nb_samples, nb_samples_per_stream, weighted_streams, seed: the same
            stream sampling as :func:`gbif_dl.api.generate_urls`, on archive columns.
        licenses, keep_unknown_licenses: a licence allow-list (``["CC0_1_0", "CC_BY_4_0"]``).
        dedupe: yield each URL once.
        api_url: GBIF API base URL (default ``$GBIF_API_URL`` or the public API).
        stats: an :class:`ArchiveStats` to fill with counters (rows, skipped by reason).
        spares: with a quota, the share of each stream's quota yielded as spares after the
            sampled items (:mod:`gbif_dl.sampling.spares`; 0: none).

    Raises:
        ConfigError: bad identifier, or ``label``/split column not in the archive (the message
            lists the columns).
        DownloadNotReadyError: the download is not SUCCEEDED (``status_name``), e.g. erased.
        ArchiveError: corrupt zip, SIMPLE_CSV/SIMPLE_PARQUET download, no multimedia extension.

    Example:
        >>> recs = generate_urls("tests/data/dwca-0022697-200613084148143.zip", label="speciesKey")
        >>> sorted(next(recs))[:4]
        ['basename', 'creator', 'datasetKey', 'format']
    """
    options = SamplingOptions.pick(locals())  # the sampling keywords of this signature
    resolved = resolve_archive(identifier, dwca_root_path, api_url=api_url)
    source = ArchiveSource(resolved.path)
    records = source.records(options)
    return SampledItems(
        _yield(records, source, stats, resolved.path if delete and resolved.fetched else None)
    )


def _yield(
    records: Iterator[MediaRecord],
    source: ArchiveSource,
    stats: ArchiveStats | None,
    delete_path: Path | None,
) -> Iterator[MediaRecord]:
    try:
        yield from records
    finally:
        if stats is not None:
            stats.__dict__.update(source.stats.__dict__)
    if delete_path is not None:
        delete_path.unlink(missing_ok=True)
        logger.info("deleted %s", delete_path)


def request(
    queries: Mapping[str, Any],
    dwca_root_path: str | os.PathLike[str] | None = None,
    label: str | None = None,
    mediatype: str | None = "StillImage",
    *,
    user: str | None = None,
    password: str | None = None,
    api_url: str | None = None,
    poll_interval_s: float = 15.0,
    max_interval_s: float = 300.0,
    timeout_s: float | None = None,
    too_many_wait_s: float = TOO_MANY_DOWNLOADS_WAIT_S,
    on_status: Callable[[dict[str, Any]], None] | None = None,
    **options: Any,
) -> Iterator[MediaRecord]:
    """Create a GBIF download (DWCA) for a search query, wait for it, then yield its media.

    ``queries`` is the same dict as for :func:`gbif_dl.api.generate_urls`: lists become ``in``
    predicates, ``"a,b"`` ranges range predicates; ``mediaType`` is added from ``mediatype``
    when the query has none. Credentials: ``user``/``password`` or ``$GBIF_USER``/``$GBIF_PWD``.
    Polling starts at ``poll_interval_s`` and slows down to ``max_interval_s`` (downloads can
    take hours; ``timeout_s=None`` waits for ever); a "too many downloads" refusal (HTTP
    420/429) waits ``too_many_wait_s`` (doubling) and tries again. The remaining keyword
    ``options`` are those of :func:`generate_urls`.

    Raises:
        ConfigError: a bad query, or no credentials.
        DownloadNotReadyError: the download failed, was cancelled, or ``timeout_s`` passed.

    Example:
        >>> urls = request({"taxonKey": 212, "country": ["FR", "DE"]}, label="speciesKey",
        ...                user="me", password="secret")  # doctest: +SKIP
    """
    from gbif_dl.gbif.params import normalize_name, to_predicate

    unknown = set(options) - _GENERATE_OPTIONS
    if unknown:
        raise ConfigError(
            f"unknown option(s) for gbif_dl.dwca.request: {', '.join(sorted(unknown))}; "
            f"accepted: {', '.join(sorted(_GENERATE_OPTIONS))}"
        )
    query = dict(queries)
    if mediatype is not None and not any(normalize_name(str(k)) == "MEDIATYPE" for k in query):
        query["mediaType"] = mediatype
    key = create_download(
        to_predicate(query),
        user=user,
        password=password,
        api_url=api_url,
        poll_interval_s=poll_interval_s,
        max_interval_s=max_interval_s,
        timeout_s=timeout_s,
        too_many_wait_s=too_many_wait_s,
        on_status=on_status,
        log=logger,
    )
    return generate_urls(
        key, dwca_root_path, label=label, mediatype=mediatype, api_url=api_url, **options
    )


#: The keyword options of :func:`generate_urls` that :func:`request` passes on.
_GENERATE_OPTIONS = frozenset(inspect.signature(generate_urls).parameters) - {
    "identifier", "dwca_root_path", "label", "mediatype", "api_url"
}  # fmt: skip
