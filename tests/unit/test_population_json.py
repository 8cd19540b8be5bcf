"""``Population.records_json`` is byte-for-byte ``json.dumps`` of ``Population.records``."""

from __future__ import annotations

import json

import pytest

from gbif_dl.testing import Population


@pytest.mark.parametrize(
    "kwargs",
    [
        {"seed": 0, "size": 1500},
        # synthetic species beyond the built-in list, several datasets, two media hosts, one
        # base URL with characters JSON must escape
        {
            "seed": 3,
            "size": 800,
            "n_species": 30,
            "n_datasets": 7,
            "media_base_urls": ["http://127.0.0.1:5/x", 'http://h\u00e9"st'],
        },
        {"seed": 7, "size": 300, "n_species": 1, "n_datasets": 1},
    ],
)
def test_records_json_equals_json_dumps_of_records(kwargs: dict) -> None:
    pop = Population(**kwargs)
    indices = list(range(pop.size))
    expected = json.dumps(pop.records(indices), separators=(",", ":"), ensure_ascii=False)
    assert pop.records_json(indices) == expected
    assert pop.records_json([5, 2, 5]) == json.dumps(
        pop.records([5, 2, 5]), separators=(",", ":"), ensure_ascii=False
    )
    assert pop.records_json([]) == "[]"


def test_records_json_rejects_an_index_out_of_range() -> None:
    pop = Population(seed=0, size=10)
    with pytest.raises(IndexError):
        pop.records_json([10])
