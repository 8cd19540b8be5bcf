"""The GBIF REST API: an asyncio client, occurrence downloads, the rules of search parameters.

:class:`GbifClient` (:mod:`.client`) is the only code in gbif-dl that knows GBIF's URLs;
:mod:`.downloads` holds the occurrence download lifecycle and :func:`fetch_file`, the one
resumable fetch of a file; :mod:`.params` checks queries before any request (GBIF silently
ignores unknown parameter names).

Example:
    >>> from gbif_dl.gbif import GbifClient, validate_query
    >>> validate_query({"mediatype": "StillImage"})
    {'mediaType': ['StillImage']}
"""

from __future__ import annotations

from gbif_dl.gbif.client import (
    DEFAULT_API_CONCURRENCY,
    DEFAULT_API_URL,
    USER_AGENT,
    ClientConfig,
    GbifClient,
    resolve_api_url,
)
from gbif_dl.gbif.downloads import DOWNLOAD_FORMATS, fetch_file
from gbif_dl.gbif.params import (
    SEARCH_PARAMETERS,
    canonical_name,
    facet_field,
    is_download_key,
    normalize_doi,
    parse_download_id,
    to_predicate,
    validate_query,
)

__all__ = [
    "DEFAULT_API_CONCURRENCY",
    "DEFAULT_API_URL",
    "DOWNLOAD_FORMATS",
    "SEARCH_PARAMETERS",
    "USER_AGENT",
    "ClientConfig",
    "GbifClient",
    "canonical_name",
    "facet_field",
    "fetch_file",
    "is_download_key",
    "normalize_doi",
    "parse_download_id",
    "resolve_api_url",
    "to_predicate",
    "validate_query",
]
