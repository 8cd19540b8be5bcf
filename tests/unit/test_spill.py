"""Sorted runs on disk (gbif_dl.manifest.spill): exact answers with bounded memory."""

from __future__ import annotations

import os
import random

import numpy as np
import pytest

from gbif_dl.manifest import spill
from gbif_dl.manifest.spill import ExternalSorter, RunFile, SpillFiles, SpillMap, merge_runs

PAIR = np.dtype([("key", "<u8"), ("pos", "<u8")])


def _records(keys: list[int], start: int = 0) -> np.ndarray:
    out = np.zeros(len(keys), dtype=PAIR)
    out["key"] = keys
    out["pos"] = np.arange(start, start + len(keys))
    return out


def test_spill_map_equals_a_dict_across_spills_and_merges() -> None:
    """Every key reads back its latest value, whether in the table or in any run."""
    rng = random.Random(5)
    expected: dict[int, int] = {}
    with SpillFiles() as files:
        states = SpillMap(files, slots=64)
        for _ in range(5_000):
            key = rng.choice([rng.randrange(1, 300), rng.getrandbits(64) or 1])
            states[key] = expected[key] = rng.randrange(256)
        assert states.runs >= 1
        assert states.runs <= 12  # merged pairwise: about log2 of the spills
        for key, value in expected.items():
            assert states.get(key) == value
        assert states.get(10**6 + 7) is None
        assert dict(states.items()) == expected
        assert states.runs == 1


def test_spill_map_memory_is_bounded() -> None:
    with SpillFiles() as files:
        states = SpillMap(files, slots=1024)
        for key in range(1, 200_001):
            states[key] = 1
        bound = 1024 * 9 + 200_000 // spill.FENCE * 8 + spill.FILTER_BITS // 8  # + 8 per run
        assert states.nbytes < bound + 8 * 64
        assert all(states.get(key) == 1 for key in range(1, 200_001, 997))


def test_run_file_finds_groups_longer_than_a_block(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(spill, "FENCE", 4)
    keys = [1] * 3 + [5] * 11 + [9] * 2
    with SpillFiles() as files:
        run = RunFile.write(files, [_records(keys[:7]), _records(keys[7:], 7)], PAIR)
        assert run.find(5)["pos"].tolist() == list(range(3, 14))
        assert run.find(1)["pos"].tolist() == [0, 1, 2]
        assert run.find(9)["pos"].tolist() == [14, 15]
        assert run.find(0).size == run.find(6).size == run.find(10).size == 0


def test_external_sort_keeps_each_key_in_one_chunk(monkeypatch: pytest.MonkeyPatch) -> None:
    """Many runs (merged in groups past FAN_IN), small blocks, long groups of one key."""
    monkeypatch.setattr(spill, "BLOCK", 8)
    monkeypatch.setattr(spill, "FAN_IN", 3)
    rng = random.Random(1)
    keys = [rng.choice([7, 8, rng.randrange(1000)]) for _ in range(2_000)]
    with SpillFiles() as files:
        sorter = ExternalSorter(PAIR, ("key", "pos"), files, chunk=50)
        for start in range(0, len(keys), 37):
            sorter.add(_records(keys[start : start + 37], start))
        chunks = list(sorter.sorted_chunks())
        assert not files._files  # the runs are freed
    merged = np.concatenate(chunks)
    assert merged["pos"].tolist() == sorted(range(len(keys)), key=lambda i: (keys[i], i))
    seen: set[int] = set()
    for chunk in chunks:
        here = set(chunk["key"].tolist())
        assert not here & seen  # a key never spans two chunks
        seen |= here


def test_merge_runs_of_nothing() -> None:
    with SpillFiles() as files:
        empty = RunFile.write(files, [], PAIR)
        assert list(merge_runs([empty], ("key",))) == []
        assert empty.find(3).size == 0


def test_spill_files_have_no_name_on_disk() -> None:
    """A killed process leaves nothing behind: the files are unlinked from the start."""
    with SpillFiles() as files:
        run = RunFile.write(files, [_records([1, 2, 3])], PAIR)
        assert run.keys is not None
        assert os.fstat(run.records.fileno()).st_nlink == 0
        assert os.fstat(run.keys.fileno()).st_nlink == 0


def test_key_filter_never_misses_a_key() -> None:
    """Absent keys may pass (a shared bit); present keys always do."""
    rng = np.random.default_rng(3)
    keys = rng.integers(1, 2**63, 20_000, dtype=np.uint64)
    present = spill.KeyFilter()
    present.add(keys[:10_000])
    assert all(int(k) in present for k in keys[:10_000])
    assert sum(int(k) in present for k in keys[10_000:]) < 100  # ~0.06% at 10,000 keys
    sequential = spill.KeyFilter()
    sequential.add(np.arange(1, 1001, dtype=np.uint64))  # row numbers spread as well
    assert sum(k in sequential for k in range(1001, 3001)) < 10
