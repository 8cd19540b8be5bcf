"""The seeded ranks every source shares, and the one attribution rule for records."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from gbif_dl.errors import ConfigError
from gbif_dl.records import (
    ATTRIBUTION_RULES,
    attribution,
    media_record,
    public_url,
    url_basename,
)
from gbif_dl.sampling.filters import pick_media
from gbif_dl.sampling.ranks import media_rank, media_ranks, occurrence_number

keys = st.integers(min_value=-(2**63), max_value=2**63 - 1)
seeds = st.one_of(st.none(), st.integers(min_value=-(10**6), max_value=10**6), st.text(max_size=8))


@given(
    seed=seeds,
    pairs=st.lists(st.tuples(keys, st.integers(min_value=0, max_value=10_000)), min_size=1),
)
def test_vectorised_ranks_equal_scalar_ranks(seed: int | str | None, pairs: list) -> None:
    k = np.array([key for key, _ in pairs], dtype=np.int64)
    p = np.array([pos for _, pos in pairs], dtype=np.int64)
    assert media_ranks(seed, k, p).tolist() == [media_rank(seed, a, b) for a, b in pairs]


def test_ranks_depend_on_seed_key_and_position() -> None:
    ranks = {media_rank(s, k, p) for s in (0, 1, "a") for k in (1, 2) for p in (0, 1)}
    assert len(ranks) == 12
    assert media_rank(None, 5, 0) == media_rank(0, 5, 0)
    assert occurrence_number("  17 ") == 17


def test_pick_media_takes_the_lowest_rank_at_the_given_positions() -> None:
    media = ["a", "b", "c"]
    positions = [4, 0, 9]
    ranks = [media_rank(3, 99, p) for p in positions]
    expected = media[ranks.index(min(ranks))]
    assert pick_media(media, seed=3, key=99, positions=positions) == expected
    # over many occurrences every position gets picked: the choice is spread, not fixed
    picked = {pick_media(media, seed=3, key=k) for k in range(60)}
    assert picked == set(media)
    with pytest.raises(ValueError, match="at least one"):
        pick_media([], seed=0, key=1)


def test_attribution_follows_the_rule_table() -> None:
    occurrence = {"publisher": "Occ pub", "license": "CC0_1_0", "rightsHolder": "Occ holder"}
    assert attribution({}, occurrence) == {
        "publisher": "Occ pub",
        "license": "CC0_1_0",
        "rightsHolder": "Occ holder",
    }
    media = {"publisher": "", "creator": "Photographer", "license": "CC_BY_4_0"}
    assert attribution(media, occurrence) == {
        "publisher": "Occ pub",  # an empty string counts as missing
        "license": "CC_BY_4_0",
        "rightsHolder": "Photographer",
    }
    assert set(ATTRIBUTION_RULES) == {"publisher", "license", "rightsHolder"}


def test_media_record_fields() -> None:
    media = {"identifier": "https://x.org/1.jpg", "format": "image/jpeg", "creator": "C"}
    occurrence = {
        "key": 12,
        "speciesKey": 5,
        "license": "http://creativecommons.org/licenses/by/4.0/",
    }
    record = media_record(media, occurrence, label="5", subset="train")
    assert record["basename"] == url_basename(media["identifier"])
    assert (record["gbifID"], record["speciesKey"], record["subset"]) == ("12", 5, "train")
    assert record["license_code"] == "CC_BY_4_0" and record["rightsHolder"] == "C"
    bare = media_record(media, occurrence, label="5", license_info=False)
    assert not {"publisher", "license", "rightsHolder", "license_code"} & set(bare)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:pass@host.org/x.jpg", "https://host.org/x.jpg"),
        ("http://u@host.org:81/x.jpg?a=b@c", "http://host.org:81/x.jpg?a=b@c"),
        ("https://a:b@c@host.org/x", "https://host.org/x"),
        ("https://host.org/p@th.jpg", "https://host.org/p@th.jpg"),
        ("https://host.org/x.jpg", "https://host.org/x.jpg"),
    ],
)
def test_public_url_drops_credentials_only(url: str, expected: str) -> None:
    assert public_url(url) == expected


def test_the_default_media_type_survives_pickling_and_lets_the_query_choose() -> None:
    """A query's mediaType wins over the default media type, also after the options travel
    to another process (pickled, as Dask does)."""
    import pickle

    from gbif_dl.options import SamplingOptions
    from gbif_dl.sampling.filters import DEFAULT_MEDIATYPE
    from gbif_dl.sources.search import check_arguments

    options = pickle.loads(pickle.dumps(SamplingOptions(label="speciesKey")))
    assert options.mediatype is DEFAULT_MEDIATYPE
    assert check_arguments({"mediaType": "Sound"}, options).mediatypes == ("Sound",)
    explicit = SamplingOptions(mediatype="StillImage")
    with pytest.raises(ConfigError, match="media type once"):
        check_arguments({"mediaType": "Sound"}, explicit)
