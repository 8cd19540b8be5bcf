"""Stream quotas: exact totals, balance within one, proportional shares after caps."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gbif_dl.errors import ConfigError
from gbif_dl.sampling.balance import StreamBalancer, allocate, balanced_total

counts_st = st.dictionaries(
    st.integers(min_value=0, max_value=40), st.integers(min_value=0, max_value=500), max_size=12
)
cap_st = st.one_of(st.none(), st.integers(min_value=0, max_value=400))


def test_none_gives_everything_up_to_cap() -> None:
    """total=None: every stream gives min(count, cap)."""
    assert allocate({"a": 10, "b": 3}, None) == {"a": 10, "b": 3}
    assert allocate({"a": 10, "b": 3}, None, cap=4) == {"a": 4, "b": 3}


def test_minus_one_is_min_times_n_then_cap() -> None:
    """total=-1: each stream gets the smallest count; a cap below it lowers every stream."""
    assert allocate({"a": 10, "b": 3, "c": 7}, -1) == {"a": 3, "b": 3, "c": 3}
    assert allocate({"a": 10, "b": 6, "c": 7}, -1, cap=4) == {"a": 4, "b": 4, "c": 4}
    assert balanced_total({"a": 10, "b": 3, "c": 7}) == 9


def test_balanced_small_stream_frees_quota() -> None:
    """A stream smaller than its share gives all it has; the rest goes to the others."""
    quotas = allocate({"a": 100, "b": 2, "c": 100}, 50)
    assert quotas["b"] == 2
    assert sum(quotas.values()) == 50
    assert abs(quotas["a"] - quotas["c"]) <= 1


def test_weighted_readme_example_shape() -> None:
    """nb_samples=1000, cap=800, weighted: exactly 1000, none above 800, the cap frees quota."""
    counts = {"big": 5000, "mid": 400, "small": 100}
    quotas = allocate(counts, 1000, cap=800, weighted=True)
    assert sum(quotas.values()) == 1000
    assert max(quotas.values()) <= 800
    # big would get 909 > 800: capped; 200 left shared 4:1 by mid and small.
    assert quotas == {"big": 800, "mid": 160, "small": 40}


def test_invalid_arguments_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="nb_samples"):
        allocate({"a": 1}, -2)
    with pytest.raises(ConfigError, match="nb_samples_per_stream"):
        allocate({"a": 1}, 5, cap=-1)


@settings(max_examples=300, deadline=None)
@given(counts=counts_st, total=st.integers(min_value=-1, max_value=3000), cap=cap_st)
def test_balanced_properties(counts: dict[int, int], total: int, cap: int | None) -> None:
    """Exact total; quotas within limits; open streams within one of each other."""
    quotas = allocate(counts, total, cap=cap)
    limits = {k: c if cap is None else min(c, cap) for k, c in counts.items()}
    wanted = balanced_total(counts) if total == -1 else total
    assert list(quotas) == list(counts)
    assert sum(quotas.values()) == min(wanted, sum(limits.values()))
    assert all(0 <= quotas[k] <= limits[k] for k in counts)
    open_quotas = [quotas[k] for k in counts if quotas[k] < limits[k]]
    if open_quotas:
        assert max(open_quotas) - min(open_quotas) <= 1
        # an open stream never gets less than a saturated one could have taken
        assert all(quotas[k] >= min(open_quotas) or quotas[k] == limits[k] for k in counts)


@settings(max_examples=300, deadline=None)
@given(counts=counts_st, total=st.integers(min_value=0, max_value=3000), cap=cap_st)
def test_weighted_properties(counts: dict[int, int], total: int, cap: int | None) -> None:
    """Exact total; each open stream within one item of its proportional share after caps."""
    quotas = allocate(counts, total, cap=cap, weighted=True)
    limits = {k: c if cap is None else min(c, cap) for k, c in counts.items()}
    assert sum(quotas.values()) == min(total, sum(limits.values()))
    assert all(0 <= quotas[k] <= limits[k] for k in counts)
    saturated = {k for k in counts if quotas[k] == limits[k]}
    open_keys = [k for k in counts if k not in saturated and counts[k] > 0]
    if open_keys:
        left = total - sum(quotas[k] for k in saturated)
        weight = sum(counts[k] for k in open_keys)
        for k in open_keys:
            ideal = Fraction(left * counts[k], weight)
            assert abs(quotas[k] - ideal) < 1


@settings(max_examples=200, deadline=None)
@given(
    counts=st.lists(st.integers(min_value=0, max_value=60), min_size=1, max_size=8),
    real_frac=st.lists(st.floats(min_value=0, max_value=1), min_size=8, max_size=8),
    total=st.integers(min_value=0, max_value=400),
    weighted=st.booleans(),
)
def test_balancer_hands_quota_on(
    counts: list[int], real_frac: list[float], total: int, weighted: bool
) -> None:
    """Streams that run dry early hand their quota on: the total is exact when items suffice."""
    keys = list(range(len(counts)))
    real = {k: int(counts[k] * real_frac[k]) for k in keys}  # items each stream truly has
    balancer = StreamBalancer(dict(zip(keys, counts, strict=False)), total, weighted=weighted)
    progress = True
    while progress:
        progress = False
        for k in keys:
            if k in balancer.dry or balancer.remaining(k) == 0:
                continue
            if balancer.delivered[k] < real[k]:
                balancer.record(k)
            else:
                balancer.exhausted(k)
            progress = True
    delivered = sum(balancer.delivered.values())
    assert delivered == min(total, sum(real.values()))
    assert all(balancer.delivered[k] <= real[k] for k in keys)


def test_balancer_minus_one_cuts_every_stream_to_the_driest() -> None:
    """total=-1: a stream that yields fewer items than its count lowers every stream's quota."""
    balancer = StreamBalancer({"a": 10, "b": 8, "c": 12}, -1)
    assert balancer.quotas == {"a": 8, "b": 8, "c": 8}
    for _ in range(5):
        balancer.record("b")
    balancer.exhausted("b")
    assert balancer.quotas == {"a": 5, "b": 5, "c": 5}
    assert balancer.balanced_max


def test_balancer_never_takes_back_delivered_items() -> None:
    """A quota never drops below what the stream already delivered."""
    balancer = StreamBalancer({"a": 10, "b": 10, "c": 10}, -1)
    for _ in range(7):
        balancer.record("a")
    for _ in range(3):
        balancer.record("b")
    balancer.exhausted("b")
    assert balancer.quotas["a"] == 7
    assert balancer.quotas["b"] == 3
