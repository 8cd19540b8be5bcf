"""Deterministic dataset splits from a hash of (group, seed).

An item's split depends only on its group key (by default the occurrence, ``gbifID``) and the
seed, never on the order or the number of items: reruns and additions keep every item in its
split, and all media of one occurrence land in the same split.

``random_subsets`` of gbif-dl 0.1 (each item drawn independently with the given probabilities)
is the same mechanism grouped by URL, so it is reproducible with a seed too.

Example:
    >>> fractions = {"train": 0.8, "val": 0.1, "test": 0.1}
    >>> assign_split("1234", seed=0, fractions=fractions) in fractions
    True
    >>> assign_split("1234", 0, fractions) == assign_split("1234", 0, fractions)
    True
    >>> splitter = Splitter(fractions, by="gbifID", seed=0)
    >>> first = splitter({"url": "http://a/1.jpg", "gbifID": 7})
    >>> first == splitter({"url": "http://a/2.jpg", "gbifID": "7"})
    True
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from typing import Any

from gbif_dl.errors import ConfigError

__all__ = ["Splitter", "assign_split", "split_unit", "validate_fractions"]


def validate_fractions(fractions: Mapping[str, float], *, name: str = "splits") -> dict[str, float]:
    """Check split fractions (non-empty, names non-empty, values >= 0, sum 1) and return a copy.

    Raises:
        ConfigError: naming the problem and the fix.

    Example:
        >>> validate_fractions({"train": 0.7, "val": 0.2, "test": 0.1})
        {'train': 0.7, 'val': 0.2, 'test': 0.1}
    """
    if not isinstance(fractions, Mapping) or not fractions:
        raise ConfigError(
            f"{name} must be a non-empty dict of split name -> fraction, "
            f"for example {{'train': 0.9, 'test': 0.1}}; got {fractions!r}"
        )
    clean: dict[str, float] = {}
    for key, value in fractions.items():
        if not isinstance(key, str) or not key.strip():
            raise ConfigError(f"{name}: split names must be non-empty strings; got {key!r}")
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ConfigError(
                f"{name}: the fraction of {key!r} must be a number; got {value!r}"
            ) from None
        if not math.isfinite(number) or number < 0:
            raise ConfigError(f"{name}: the fraction of {key!r} must be >= 0; got {value!r}")
        clean[key] = number
    total = math.fsum(clean.values())
    if not math.isclose(total, 1.0, abs_tol=1e-6):
        raise ConfigError(
            f"{name}: the fractions must add up to 1.0 but add up to {total:g}; "
            f"adjust them, for example {{'train': 0.8, 'val': 0.1, 'test': 0.1}}"
        )
    return clean


def split_unit(group: object, seed: int | str = 0) -> float:
    """A uniform number in [0, 1) derived from ``(group, seed)`` only.

    Example:
        >>> 0.0 <= split_unit("42", seed=1) < 1.0
        True
    """
    digest = hashlib.sha256(f"{seed}\x1f{group}".encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2.0**64


def assign_split(group: object, seed: int | str, fractions: Mapping[str, float]) -> str:
    """The split of ``group`` (any value; compared as ``str``) for ``seed`` and ``fractions``.

    Splits are taken in the order of ``fractions``; ``fractions`` should be validated first
    (see :func:`validate_fractions`).

    Example:
        >>> assign_split(12, seed=0, fractions={"all": 1.0})
        'all'
    """
    point = split_unit(group, seed)
    cumulative = 0.0
    last = ""
    for name, fraction in fractions.items():
        if fraction <= 0:
            continue
        cumulative += fraction
        last = name
        if point < cumulative:
            return name
    return last  # rounding: the point fell in the last sliver above a sum of 0.9999999...


class Splitter:
    """Assign records to splits by a hash of a grouping field and a seed.

    Args:
        fractions: split name -> fraction, adding up to 1.
        by: the record field that groups items (``"gbifID"`` keeps an occurrence's media
            together; ``"url"`` draws each item independently). Records without the field fall
            back to their ``url``.
        seed: changes the assignment; the same seed always gives the same splits.

    Example:
        >>> s = Splitter({"train": 0.5, "test": 0.5}, by="url", seed=3)
        >>> s({"url": "http://h/a.jpg"}) in ("train", "test")
        True
    """

    def __init__(
        self, fractions: Mapping[str, float], *, by: str = "gbifID", seed: int | str = 0
    ) -> None:
        self.fractions = validate_fractions(fractions)
        self.by = by
        self.seed = seed

    def group_of(self, record: Mapping[str, Any]) -> object:
        """The grouping value of ``record`` (its ``by`` field, else its url)."""
        value = record.get(self.by)
        if value is None or value == "":
            value = record.get("url")
        return value

    def __call__(self, record: Mapping[str, Any]) -> str:
        return assign_split(self.group_of(record), self.seed, self.fractions)

    def __repr__(self) -> str:
        return f"Splitter({self.fractions!r}, by={self.by!r}, seed={self.seed!r})"
