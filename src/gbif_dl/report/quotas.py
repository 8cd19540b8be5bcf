"""The report's quota section: per class, requested vs delivered, spares used, ran dry.

Only datasets downloaded from a sampling generator (items with a ``stream`` and a ``quota``,
:mod:`gbif_dl.sampling.spares`) have it; the numbers come from the manifest's quota columns
(:func:`gbif_dl.pipeline.shortfall.stream_outcomes`).

Example:
    >>> quota_rows({"speciesKey=1": {"requested": 100, "delivered": 97, "spares_used": 4,
    ...     "failed": 7, "ran_dry": True, "trimmed": 0}})
    [['speciesKey=1', 100, 97, 4, 7, 'yes', 0]]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["QUOTA_HEADERS", "quota_rows", "quota_title"]

#: The columns of the quota table.
QUOTA_HEADERS = ("stream", "requested", "delivered", "spares used", "failed", "ran dry", "trimmed")


def quota_rows(streams: Mapping[str, Mapping[str, Any]]) -> list[list[Any]]:
    """One row per stream, in the order of :data:`QUOTA_HEADERS`.

    Example:
        >>> quota_rows({})
        []
    """
    return [
        [
            name,
            s["requested"],
            s["delivered"],
            s["spares_used"],
            s["failed"],
            "yes" if s["ran_dry"] else "",
            s["trimmed"],
        ]
        for name, s in streams.items()
    ]


def quota_title(streams: Mapping[str, Mapping[str, Any]]) -> str:
    """The section title: how many streams met their quota.

    Example:
        >>> quota_title({"a": {"requested": 2, "delivered": 2, "ran_dry": False}})
        'Quotas (1 of 1 streams complete)'
    """
    complete = sum(not s["ran_dry"] and s["delivered"] >= s["requested"] for s in streams.values())
    return f"Quotas ({complete} of {len(streams)} streams complete)"
