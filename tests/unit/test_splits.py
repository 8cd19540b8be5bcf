"""Deterministic grouped splits: gbif_dl.sampling.splits."""

from __future__ import annotations

from collections import Counter

import pytest

from gbif_dl.errors import ConfigError
from gbif_dl.sampling.splits import Splitter, assign_split, validate_fractions

FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}


def test_same_group_and_seed_always_same_split() -> None:
    """The split depends only on (group, seed): repeated calls agree."""
    first = [assign_split(str(g), 7, FRACTIONS) for g in range(500)]
    again = [assign_split(str(g), 7, FRACTIONS) for g in range(500)]
    assert first == again


def test_seed_changes_the_assignment() -> None:
    """Another seed gives another (still valid) assignment."""
    a = [assign_split(g, 1, FRACTIONS) for g in range(500)]
    b = [assign_split(g, 2, FRACTIONS) for g in range(500)]
    assert a != b
    assert set(a) | set(b) <= set(FRACTIONS)


def test_proportions_follow_the_fractions() -> None:
    """Over 20,000 groups each split gets its fraction within one percentage point."""
    counts = Counter(assign_split(g, 0, FRACTIONS) for g in range(20_000))
    for name, fraction in FRACTIONS.items():
        assert abs(counts[name] / 20_000 - fraction) < 0.01, counts


def test_records_of_one_occurrence_share_a_split() -> None:
    """All media of one gbifID land in one split, whether the id is an int or a str."""
    splitter = Splitter(FRACTIONS, by="gbifID", seed=3)
    for gbif_id in range(300):
        splits = {
            splitter({"url": f"http://h/media/{gbif_id}/{j}.jpg", "gbifID": gid})
            for j, gid in enumerate([gbif_id, str(gbif_id), gbif_id])
        }
        assert len(splits) == 1


def test_adding_items_keeps_old_assignments() -> None:
    """Assignments are independent of what else is in the dataset or the order."""
    splitter = Splitter(FRACTIONS, seed=0)
    old = [{"url": f"http://h/{i}.jpg", "gbifID": i} for i in range(200)]
    before = {r["url"]: splitter(r) for r in old}
    grown = [{"url": f"http://h/{i}.jpg", "gbifID": i} for i in range(1000)][::-1]
    after = {r["url"]: splitter(r) for r in grown}
    assert all(after[url] == split for url, split in before.items())


def test_records_without_the_group_field_fall_back_to_url() -> None:
    """A record lacking split_by is grouped by its url (deterministically)."""
    splitter = Splitter(FRACTIONS, by="gbifID", seed=0)
    by_url = Splitter(FRACTIONS, by="url", seed=0)
    record = {"url": "http://h/x.jpg"}
    assert splitter(record) == by_url(record)


def test_zero_fraction_split_never_chosen() -> None:
    """A split with fraction 0 gets nothing."""
    counts = Counter(assign_split(g, 0, {"a": 0.5, "none": 0.0, "b": 0.5}) for g in range(2000))
    assert counts["none"] == 0 and counts["a"] > 0 and counts["b"] > 0


def test_fractions_with_float_rounding_are_accepted() -> None:
    """0.7 + 0.2 + 0.1 is 0.9999999999999999 in floats; that is still 1."""
    assert validate_fractions({"a": 0.7, "b": 0.2, "c": 0.1}) == {"a": 0.7, "b": 0.2, "c": 0.1}


@pytest.mark.parametrize(
    "bad",
    [{}, {"a": 0.5}, {"a": 0.5, "b": 0.6}, {"a": -0.5, "b": 1.5}, {"": 1.0}, {"a": "x"}, [0.5]],
)
def test_bad_fractions_raise_config_error(bad: object) -> None:
    """Bad fractions raise ConfigError naming the fix, before anything runs."""
    with pytest.raises(ConfigError, match="splits"):
        validate_fractions(bad)  # type: ignore[arg-type]
