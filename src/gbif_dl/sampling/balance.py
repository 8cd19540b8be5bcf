"""Stream quotas: how many items each stream contributes to a sample.

A *stream* is one combination of the values a query is split by (``split_streams_by``), for
example one species in one dataset. :func:`allocate` turns the number of items each stream has
into a quota per stream:

* ``total=None``: every stream gives everything it has (up to ``cap``).
* ``total=-1``: the largest *balanced* total, ``min(count) * n_streams`` (each stream then also
  at most ``cap``).
* ``total=N``, balanced (default): water-filling. Every stream gets the same share; a stream
  with fewer items gives all it has and the rest is shared among the others. Quotas differ by
  at most one between streams that are not exhausted, and ``sum == min(N, available)``.
* ``total=N``, ``weighted=True``: shares proportional to the counts, largest-remainder
  rounding, after caps: what caps and small streams cannot take is redistributed
  proportionally among the others.

Counts from GBIF facets are *occurrence* counts, an upper bound on the media items a stream
really yields. :class:`StreamBalancer` handles that dynamically: when a stream runs dry before
its quota, its remaining quota is handed to the streams that still have items (or, for
``total=-1``, every stream is cut to the same smaller number).

Example:
    >>> allocate({"a": 10, "b": 3, "c": 50}, 20)
    {'a': 9, 'b': 3, 'c': 8}
    >>> allocate({"a": 10, "b": 3, "c": 50}, -1)
    {'a': 3, 'b': 3, 'c': 3}
    >>> allocate({"a": 100, "b": 300}, 10, weighted=True)
    {'a': 3, 'b': 7}
    >>> allocate({"a": 10, "b": 3}, None, cap=5)
    {'a': 5, 'b': 3}
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping
from typing import Generic, TypeVar

from gbif_dl.errors import ConfigError

__all__ = ["StreamBalancer", "allocate", "balanced_total"]

K = TypeVar("K", bound=Hashable)


def _check(counts: Mapping[K, int], total: int | None, cap: int | None) -> None:
    if total is not None and (not isinstance(total, int) or total < -1):
        raise ConfigError(
            f"nb_samples must be None, -1 or a number >= 0, got {total!r}; "
            "use -1 for the largest balanced total or None for everything"
        )
    if cap is not None and (not isinstance(cap, int) or cap < 0):
        raise ConfigError(
            f"nb_samples_per_stream must be None or a number >= 0, got {cap!r}; "
            "use None for no cap per stream"
        )
    for key, count in counts.items():
        if not isinstance(count, int) or count < 0:
            raise ConfigError(
                f"stream {key!r} has an invalid count {count!r}; expected an int >= 0"
            )


def balanced_total(limits: Mapping[K, int]) -> int:
    """The largest total every stream can contribute equally to: ``min(limits) * n``.

    Example:
        >>> balanced_total({"a": 7, "b": 4})
        8
        >>> balanced_total({})
        0
    """
    return min(limits.values()) * len(limits) if limits else 0


def _water_fill(limits: Mapping[K, int], total: int) -> dict[K, int]:
    """Equal shares under per-stream limits; the extra units go to the first open streams."""
    quotas = {key: 0 for key in limits}
    remaining = min(total, sum(limits.values()))
    open_keys = [key for key in limits if limits[key] > 0]
    while remaining > 0 and open_keys:
        share = remaining // len(open_keys)
        if share == 0:
            for key in open_keys[:remaining]:
                quotas[key] += 1
            break
        still_open = []
        for key in open_keys:
            take = min(share, limits[key] - quotas[key])
            quotas[key] += take
            remaining -= take
            if quotas[key] < limits[key]:
                still_open.append(key)
        open_keys = still_open
    return quotas


def _proportional(weights: Mapping[K, int], limits: Mapping[K, int], total: int) -> dict[K, int]:
    """Shares proportional to ``weights`` under ``limits``, largest-remainder rounding."""
    quotas = {key: 0 for key in limits}
    remaining = min(total, sum(limits.values()))
    open_keys = [key for key in limits if limits[key] > 0 and weights.get(key, 0) > 0]
    # Streams whose proportional share reaches their limit are fixed at the limit; repeat with
    # the rest, so capped or small streams free their excess for the others.
    while open_keys:
        weight_sum = sum(weights[key] for key in open_keys)
        saturated = [
            key for key in open_keys if remaining * weights[key] >= limits[key] * weight_sum
        ]
        if not saturated:
            break
        for key in saturated:
            quotas[key] = limits[key]
            remaining -= limits[key]
        open_keys = [key for key in open_keys if key not in set(saturated)]
    if not open_keys or remaining <= 0:
        return quotas
    weight_sum = sum(weights[key] for key in open_keys)
    floors: dict[K, int] = {}
    remainders: list[tuple[int, int, K]] = []
    for index, key in enumerate(open_keys):
        whole, rest = divmod(remaining * weights[key], weight_sum)
        floors[key] = whole
        remainders.append((-rest, index, key))
    left = remaining - sum(floors.values())
    for _, _, key in sorted(remainders)[:left]:
        floors[key] += 1
    for key, value in floors.items():
        quotas[key] = min(value, limits[key])
    return quotas


def _allocate(
    weights: Mapping[K, int], limits: Mapping[K, int], total: int | None, weighted: bool
) -> dict[K, int]:
    if total is None:
        return dict(limits)
    if weighted:
        return _proportional(weights, limits, total)
    return _water_fill(limits, total)


def allocate(
    counts: Mapping[K, int],
    total: int | None,
    *,
    cap: int | None = None,
    weighted: bool = False,
) -> dict[K, int]:
    """Quota per stream for ``total`` items drawn from streams with ``counts`` items.

    Args:
        counts: items available per stream (in the order streams are served).
        total: ``None`` for everything, ``-1`` for the largest balanced total
            (``min(counts) * len(counts)``), or the number of items wanted.
        cap: the most items any one stream may give (``nb_samples_per_stream``).
        weighted: shares proportional to ``counts`` instead of equal shares.

    Returns:
        ``{stream: quota}`` in the order of ``counts``; the quotas sum to
        ``min(total, sum(min(count, cap)))``.

    Raises:
        ConfigError: a negative total other than -1, a negative cap or count.

    Example:
        >>> allocate({"a": 1000, "b": 500, "c": 20}, 1000, cap=600, weighted=True)
        {'a': 600, 'b': 385, 'c': 15}
        >>> allocate({"a": 5, "b": 5, "c": 5}, 7)
        {'a': 3, 'b': 2, 'c': 2}
    """
    _check(counts, total, cap)
    limits = {key: count if cap is None else min(count, cap) for key, count in counts.items()}
    if total == -1:
        total = balanced_total(dict(counts))
    return _allocate(counts, limits, total, weighted)


class StreamBalancer(Generic[K]):
    """Quotas that adapt while streams are read: a dry stream hands its quota on.

    Start from the counts (upper bounds, e.g. occurrence counts from facets). Call
    :meth:`record` for each item a stream delivers and :meth:`exhausted` when a stream has no
    more items. The quotas of the other streams grow so that the total stays exact; with
    ``total=-1`` every stream is instead cut to what the driest stream delivered, so that the
    sample stays balanced.

    Quotas never drop below what a stream has already delivered.

    Example:
        >>> balancer = StreamBalancer({"a": 10, "b": 10}, 10)
        >>> balancer.quotas
        {'a': 5, 'b': 5}
        >>> for _ in range(3):
        ...     balancer.record("b")
        >>> balancer.exhausted("b")
        >>> balancer.quotas
        {'a': 7, 'b': 3}
        >>> balancer.remaining("a")
        7
    """

    def __init__(
        self,
        counts: Mapping[K, int],
        total: int | None,
        *,
        cap: int | None = None,
        weighted: bool = False,
    ) -> None:
        _check(counts, total, cap)
        self._weights = dict(counts)
        self._limits = {k: c if cap is None else min(c, cap) for k, c in counts.items()}
        self._total = total
        self._weighted = weighted
        self.delivered: dict[K, int] = {key: 0 for key in counts}
        self.dry: set[K] = set()
        self.quotas: dict[K, int] = {}
        self._rebalance()

    @property
    def balanced_max(self) -> bool:
        """True for ``total=-1`` (every stream gives the same number of items)."""
        return self._total == -1

    @property
    def total(self) -> int:
        """The sum of the current quotas."""
        return sum(self.quotas.values())

    def remaining(self, key: K) -> int:
        """Items stream ``key`` still has to deliver."""
        return max(0, self.quotas[key] - self.delivered[key])

    def is_done(self) -> bool:
        """True once every stream delivered its quota or ran dry."""
        return all(self.remaining(key) == 0 or key in self.dry for key in self.quotas)

    def record(self, key: K, n: int = 1) -> None:
        """Count ``n`` items delivered by stream ``key``."""
        self.delivered[key] += n

    def exhausted(self, key: K) -> None:
        """Stream ``key`` has no more items: its limit becomes what it delivered."""
        self.dry.add(key)
        self._limits[key] = min(self._limits[key], self.delivered[key])
        self._rebalance()

    def _rebalance(self) -> None:
        total = self._total
        if total == -1:
            total = balanced_total(self._weights) if self._weighted else None
            if not self._weighted:
                level = min(self._limits.values()) if self._limits else 0
                quotas = {key: min(level, limit) for key, limit in self._limits.items()}
                self.quotas = self._keep_delivered(quotas)
                return
        quotas = _allocate(self._weights, self._limits, total, self._weighted)
        self.quotas = self._keep_delivered(quotas)

    def _keep_delivered(self, quotas: dict[K, int]) -> dict[K, int]:
        """Raise quotas below what was delivered; take the surplus from the last open streams."""
        surplus = 0
        for key, quota in quotas.items():
            if quota < self.delivered[key]:
                surplus += self.delivered[key] - quota
                quotas[key] = self.delivered[key]
        for key in reversed(list(quotas)):
            if surplus <= 0:
                break
            spare = quotas[key] - self.delivered[key]
            take = min(spare, surplus)
            quotas[key] -= take
            surplus -= take
        return quotas
