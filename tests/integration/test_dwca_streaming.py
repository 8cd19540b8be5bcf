"""The one-pass streaming join of DwC-A archives against the three-pass reader.

Both read the same real zip files; the streaming join must yield exactly the records of the
three passes (same order, same counters) when the multimedia rows follow their occurrences, as
GBIF writes them, and must fall back to the three passes, without repeating a record, an URL or
an occurrence, when they do not. The occurrence worker is a real child process.
"""

from __future__ import annotations

import io
import logging
import os
import re
import subprocess
import sys
import threading
import zipfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from gbif_dl.errors import ArchiveError
from gbif_dl.sources.archive import ArchiveSource
from gbif_dl.sources.archive import build as build_module
from gbif_dl.sources.archive import inflate as inflate_module
from gbif_dl.sources.archive import members as members_module
from gbif_dl.sources.archive.build import python_strings
from gbif_dl.sources.archive.columns import (
    SIMPLE_URL,
    MediaPositions,
    RowBits,
    SortedSet,
    lowest_per_group,
    pick,
    simple_urls,
    trim,
)
from gbif_dl.sources.archive.join import ParsedMedia
from gbif_dl.sources.archive.worker import ForkedProcess, fork_is_safe
from gbif_dl.testing import Population
from gbif_dl.testing.archive import write_dwca

REAL = Path(__file__).resolve().parents[1] / "data" / "dwca-0022697-200613084148143.zip"
# small arrow blocks and batches: an archive of a few hundred rows spans many batches
SMALL = {"block_size": 1 << 14, "batch_rows": 64}


def _source(
    path: Path, *, streaming: bool, worker: Literal["fork", "spawn"] | None = None, **kwargs: Any
) -> ArchiveSource:
    """A source; ``worker``: read the occurrences in a worker process started that way."""
    source = ArchiveSource(path, **kwargs)
    source.streaming = streaming
    source.worker_min_bytes = 0 if worker else 1 << 62
    if worker:
        source.worker_start = worker
    return source


def _both(
    path: Path, worker: Literal["fork", "spawn"] | None = None, **options: Any
) -> tuple[list[Any], ArchiveSource, list[Any], ArchiveSource]:
    streamed = _source(path, streaming=True, worker=worker, **SMALL)
    passes = _source(path, streaming=False, **SMALL)
    return list(streamed.records(**options)), streamed, list(passes.records(**options)), passes


def _assert_same(
    path: Path, worker: Literal["fork", "spawn"] | None = None, **options: Any
) -> list[Any]:
    got, streamed, expected, passes = _both(path, worker, **options)
    assert got == expected
    assert streamed.stats == passes.stats
    return got


@pytest.fixture(scope="module")
def population() -> Population:
    return Population(seed=11, size=400, n_species=5, n_datasets=3)


@pytest.fixture(scope="module")
def shuffled(population: Population, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Occurrences in no id order (as GBIF writes them), media following their occurrence."""
    path = tmp_path_factory.mktemp("dwca") / "shuffled.zip"
    write_dwca(population, np.random.default_rng(3).permutation(population.size), path)
    return path


def _rewrite_media(source: Path, target: Path, reorder: Any) -> Path:
    """A copy of ``source`` whose multimedia data rows are ``reorder(rows)``."""
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as new:
        for info in old.infolist():
            data = old.read(info.filename)
            if info.filename == "multimedia.txt":
                header, *rows = data.decode().splitlines(keepends=True)
                data = (header + "".join(reorder(rows))).encode()
            new.writestr(info.filename, data)
    return target


@pytest.mark.parametrize(
    "options",
    [
        {"label": "speciesKey"},
        {"label": "scientificName", "mediatype": None},
        {"label": "family", "one_media_per_occurrence": False, "dedupe": False},
        {"label": "speciesKey", "licenses": ["CC_BY_4_0"], "seed": 5},
        {"label": "speciesKey", "split_streams_by": "datasetKey", "license_info": False},
    ],
)
def test_streaming_equals_three_passes_on_the_real_download(options: dict[str, Any]) -> None:
    """The real GBIF download (not in id order, media in occurrence order): same records."""
    assert _assert_same(REAL, **options)


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_streaming_equals_three_passes_in_a_worker_process(
    shuffled: Path, start: Literal["fork", "spawn"]
) -> None:
    """Occurrences read by a child process: the same records and counters as in one process."""
    got, streamed, expected, _ = _both(shuffled, worker=start, label="speciesKey")
    assert got == expected and got
    process = streamed._occurrence_process
    assert isinstance(process, ForkedProcess if start == "fork" else subprocess.Popen)
    assert process.returncode is not None  # it ran, and was reaped
    assert _assert_same(REAL, worker=start, label="scientificName") == _assert_same(
        REAL, label="scientificName"
    )


def _run_on_real(script: str) -> str:
    """Run ``script`` in a new interpreter with the real download's path as its argument;
    it must exit with 0 and write nothing to stderr. Its stdout."""
    done = subprocess.run(
        [sys.executable, "-c", script, str(REAL)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    return done.stdout


def _invariants(records: list[dict[str, Any]]) -> None:
    urls = Counter(r["url"] for r in records)
    occurrences = Counter(r["gbifID"] for r in records)
    assert max(urls.values()) == 1 and max(occurrences.values()) == 1


def _image(row: str) -> bool:
    return "\tStillImage\t" in row and "\thttp" in row


def _streamed_before_fallback(caplog: pytest.LogCaptureFixture) -> int:
    note = next(m for m in caplog.messages if "three passes" in m)
    found = re.search(r"\((\d+) records so far\)", note)
    assert found is not None
    return int(found.group(1))


def test_media_out_of_occurrence_order_fall_back_without_repeats(
    shuffled: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The second half of the multimedia rows reversed: the first half is streamed, the
    three passes do the rest, and no record, URL or occurrence comes twice."""

    def half_reversed(rows: list[str]) -> list[str]:
        half = len(rows) // 2
        return rows[:half] + rows[half:][::-1]

    mixed = _rewrite_media(shuffled, tmp_path / "mixed.zip", half_reversed)
    caplog.set_level(logging.INFO, logger="gbif_dl.sources.archive")
    got, streamed, expected, passes = _both(mixed, label="speciesKey")
    assert _streamed_before_fallback(caplog) > 0
    _invariants(got)
    # media of one occurrence stay together here, so the records are those of the three passes
    assert sorted(r["url"] for r in got) == sorted(r["url"] for r in expected)
    assert streamed.stats.records == len(got) == passes.stats.records


def test_an_occurrence_whose_media_come_back_later_is_yielded_once(
    shuffled: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One image row moved to the end: its occurrence's record was streamed already, the
    three passes keep that choice (the row yielded wins over the row that came back)."""
    with zipfile.ZipFile(shuffled) as archive:
        _, *rows = archive.read("multimedia.txt").decode().splitlines(keepends=True)
    ids = [row.split("\t", 1)[0] for row in rows]
    moved_row = next(
        i
        for i in range(1, len(rows) // 4)
        if ids[i] == ids[i - 1] and _image(rows[i]) and _image(rows[i - 1])
    )

    def move(rows: list[str]) -> list[str]:
        return [*rows[:moved_row], *rows[moved_row + 1 :], rows[moved_row]]

    moved = _rewrite_media(shuffled, tmp_path / "moved.zip", move)
    caplog.set_level(logging.INFO, logger="gbif_dl.sources.archive")
    got, _, expected, _ = _both(moved, label="speciesKey")
    assert _streamed_before_fallback(caplog) > 0
    _invariants(got)
    assert sum(r["gbifID"] == ids[moved_row] for r in got) == 1
    assert {r["gbifID"] for r in got} == {r["gbifID"] for r in expected}
    assert len(got) == len(expected)


def test_media_of_unknown_occurrences_fall_back_and_are_counted(
    shuffled: Path, tmp_path: Path
) -> None:
    """An image row whose occurrence does not exist: counted as no_occurrence, as in 3 passes."""

    def orphan(rows: list[str]) -> list[str]:
        at = next(i for i in range(5, len(rows)) if _image(rows[i]))
        return [*rows[:at], "999999999\t" + rows[at].split("\t", 1)[1], *rows[at + 1 :]]

    orphaned = _rewrite_media(shuffled, tmp_path / "orphan.zip", orphan)
    got, streamed, expected, passes = _both(orphaned, label="speciesKey")
    _invariants(got)
    assert sorted(r["url"] for r in got) == sorted(r["url"] for r in expected)
    assert streamed.stats.skipped["no_occurrence"] == passes.stats.skipped["no_occurrence"] == 1


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_worker_errors_reach_the_caller_as_archive_errors(
    shuffled: Path, tmp_path: Path, start: Literal["fork", "spawn"]
) -> None:
    """Corrupt occurrence bytes, read by the worker: an ArchiveError naming the member."""
    broken = tmp_path / "broken.zip"
    data = bytearray(shuffled.read_bytes())
    with zipfile.ZipFile(shuffled) as archive:
        info = archive.getinfo("occurrence.txt")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    for offset in range(start + 200, start + info.compress_size - 200, 97):
        data[offset] ^= 0x5A
    broken.write_bytes(bytes(data))
    source = _source(broken, streaming=True, worker=start)
    with pytest.raises(ArchiveError, match=r"occurrence\.txt"):
        list(source.records(label="speciesKey"))
    assert source._occurrence_process is not None


@pytest.mark.parametrize("start", ["fork", "spawn"])
def test_stopping_early_stops_the_worker_and_counts_what_was_handed_out(
    shuffled: Path, start: Literal["fork", "spawn"]
) -> None:
    source = _source(shuffled, streaming=True, worker=start)
    records = source.records(label="speciesKey")
    first = [next(records) for _ in range(5)]
    assert len({r["url"] for r in first}) == 5
    process = source._occurrence_process
    assert process is not None
    records.close()  # type: ignore[attr-defined]
    assert process.poll() is not None
    assert source.stats.records == 5


@pytest.mark.parametrize("executable", ["/nonexistent/python", "false"])
def test_a_worker_that_cannot_run_leaves_the_work_to_this_process(
    shuffled: Path, monkeypatch: pytest.MonkeyPatch, executable: str
) -> None:
    """No interpreter at all, or one that exits at once: the records come all the same."""
    expected = list(_source(shuffled, streaming=False).records(label="speciesKey"))
    if executable == "false":
        executable = next(
            str(p / "false") for p in map(Path, ("/bin", "/usr/bin")) if (p / "false").exists()
        )
    monkeypatch.setattr(sys, "executable", executable)
    source = _source(shuffled, streaming=True, worker="spawn")
    assert list(source.records(label="speciesKey")) == expected


def test_auto_starts_a_new_interpreter_while_other_threads_run(shuffled: Path) -> None:
    """A fork could leave another thread's locks held in the child: with a second Python
    thread running, ``auto`` spawns; the records are the same."""
    expected = list(_source(shuffled, streaming=False).records(label="speciesKey"))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)
    other.start()
    try:
        assert not fork_is_safe()
        source = _source(shuffled, streaming=True, worker="spawn")
        source.worker_start = "auto"
        assert list(source.records(label="speciesKey")) == expected
        assert isinstance(source._occurrence_process, subprocess.Popen)
    finally:
        stop.set()
        other.join()


def test_a_forked_worker_leaves_the_parents_output_and_exit_handlers_alone() -> None:
    """In a script with no other thread, ``auto`` forks; the child neither writes the parent's
    unflushed output again nor runs its exit handlers (it leaves with ``os._exit``)."""
    script = (
        "import atexit, sys\n"
        "from gbif_dl.sources.archive import ArchiveSource\n"
        "atexit.register(lambda: print('exit-handler'))\n"
        "sys.stdout.write('unflushed ')\n"  # a pipe: block-buffered, still in the buffer
        "source = ArchiveSource(sys.argv[1])\n"
        "source.worker_min_bytes = 0\n"
        "n = sum(1 for _ in source.records(label='speciesKey'))\n"
        "print(type(source._occurrence_process).__name__, n)\n"
    )
    stdout = _run_on_real(script)
    expected = len(list(_source(REAL, streaming=False).records(label="speciesKey")))
    assert stdout == f"unflushed ForkedProcess {expected}\nexit-handler\n"


def test_a_forked_worker_keeps_none_of_the_parents_files_open(tmp_path: Path) -> None:
    """Like a new interpreter, the forked child holds only stdio, its pipe and what it opens
    itself: a socket or file of the parent's is not kept open by it."""
    population = Population(seed=12, size=20_000, n_species=5, n_datasets=3)
    path = tmp_path / "big.zip"
    write_dwca(population, np.arange(population.size), path)
    read_end, write_end = os.pipe()
    try:
        # tiny batches: more messages than the pipe holds, so the child is still running
        source = _source(path, streaming=True, worker="fork", batch_rows=4)
        records = source.records(label="speciesKey")
        next(records)
        process = source._occurrence_process
        assert isinstance(process, ForkedProcess)
        held = {int(fd) for fd in os.listdir(f"/proc/{process.pid}/fd")}
        records.close()  # type: ignore[attr-defined]
    finally:
        os.close(read_end)
        os.close(write_end)
    assert {0, 1, 2} <= held
    assert read_end not in held and write_end not in held
    assert len(held) <= 3 + 1 + 2  # stdio, the pipe, the archive (opened twice at most)


def test_sampling_and_whole_row_labels_still_use_three_passes(shuffled: Path) -> None:
    """Quotas need every candidate first: the same result whether streaming is on or off."""
    for options in ({"label": "speciesKey", "nb_samples": 50, "split_streams_by": "speciesKey"},
                    {"label": None}):  # fmt: skip
        assert _assert_same(shuffled, **options)


def _stream_of_sets(rng: np.random.Generator) -> Iterator[np.ndarray]:
    for size in rng.integers(1, 3000, size=40):
        values = rng.integers(-(1 << 20), 1 << 20, size=int(size))
        values[: size // 10] = 0  # zero is the empty mark inside the table: still a value
        yield np.unique(values)  # distinct within a batch, as the join hands them in


def test_parsed_media_gives_rows_across_batches_and_forgets_joined_ones() -> None:
    """The streaming join takes record fields of its kept rows from the parsed batches: by file
    row number, across batch boundaries, a column a batch lacks as empty strings; batches that
    end at or before the carried rows are dropped (memory stays bounded)."""
    parsed = ParsedMedia()
    sizes = [5, 3, 4]
    row0 = 0
    for number, size in enumerate(sizes):
        columns = {"creator": pa.array([f"c{row0 + i}" for i in range(size)])}
        if number != 1:  # the second batch has no format column
            columns["format"] = pa.array([f"f{row0 + i}" for i in range(size)])
        parsed.add(row0, pa.RecordBatch.from_pydict(columns))
        row0 += size
    rows = np.array([1, 4, 5, 7, 8, 11])  # in all three batches
    got = parsed.columns(rows, ["creator", "format"])
    assert got["creator"].to_pylist() == [f"c{r}" for r in rows.tolist()]
    assert got["format"].to_pylist() == ["f1", "f4", "", "", "f8", "f11"]
    assert parsed.columns(np.array([9, 10]), ["creator"])["creator"].to_pylist() == ["c9", "c10"]
    parsed.forget_before(5)  # the first batch ends at row 5
    assert parsed.starts == [5, 8]
    assert parsed.columns(np.array([6, 9]), ["creator"])["creator"].to_pylist() == ["c6", "c9"]
    parsed.forget_before(9)  # inside the last batch: it stays
    assert parsed.starts == [8]
    parsed.forget_before(12)
    assert parsed.starts == [] and parsed.batches == []


def test_streaming_join_holds_only_the_batches_it_still_needs(
    shuffled: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Over a file of many batches the join keeps the parsed batches of its carried-over rows
    only (two at a time here), not every batch read so far."""
    held: list[int] = []
    add = ParsedMedia.add

    def counting_add(self: ParsedMedia, row0: int, batch: pa.RecordBatch) -> None:
        add(self, row0, batch)
        held.append(len(self.batches))

    monkeypatch.setattr(ParsedMedia, "add", counting_add)
    tiny = {"block_size": 1 << 10, "batch_rows": 16}  # a few rows per chunk and batch
    streamed = _source(shuffled, streaming=True, **tiny).records(label="speciesKey")
    passes = _source(shuffled, streaming=False, **tiny).records(label="speciesKey")
    assert list(streamed) == list(passes)
    assert len(held) > 10  # many batches went through
    assert max(held) <= 2


def test_hash_set_agrees_with_a_python_set() -> None:
    rng = np.random.default_rng(0)
    seen, reference = SortedSet(), set()
    for batch in _stream_of_sets(rng):
        new = seen.add(batch)
        assert new.tolist() == [int(v) not in reference for v in batch]
        reference.update(batch.tolist())


def test_hash_set_keeps_the_first_of_repeated_values() -> None:
    """Repeats within a batch: only the first of equal values is new, in input order."""
    rng = np.random.default_rng(4)
    seen, reference = SortedSet(), set()
    for _ in range(30):
        batch = rng.integers(-50, 50, size=int(rng.integers(1, 200)))
        expected = []
        for value in batch.tolist():
            expected.append(value not in reference)
            reference.add(value)
        assert seen.add(batch).tolist() == expected


def test_hash_set_is_exact_when_low_bits_collide() -> None:
    """Values sharing their low bits (the bits a bitmap in front of the set would use):
    membership is exact (the sorted arrays decide), for members and non-members alike,
    negative values too."""
    rng = np.random.default_rng(6)
    stride = np.int64(1 << 25)
    base = rng.choice(1000, size=300, replace=False).astype(np.int64)  # distinct
    seen, reference = SortedSet(), set()
    for step in range(-6, 7):  # every value shares its low bits with those of other steps
        batch = base + stride * step
        batch = batch[rng.permutation(batch.size)]
        expected = []
        for value in batch.tolist():
            expected.append(value not in reference)
            reference.add(value)
        assert seen.add(batch).tolist() == expected
    again = base + stride * 7
    assert seen.add(again).all()  # bits all set, none a member
    assert not seen.add(base).any()


def test_pick_follows_its_growing_list() -> None:
    """Picks see the values appended since the last pick."""
    rng = np.random.default_rng(7)
    values: list[Any] = [""]
    for step in range(40):
        values.extend([f"v{step}-{k}" if k % 3 else None for k in range(step * 5)])
        values.append(step)  # any object, not only strings
        index = rng.integers(0, len(values), size=int(rng.integers(0, 60)))
        assert pick(values, index) == [values[i] for i in index.tolist()]
    assert pick(["a", "b", "c"], np.array([2, 2, 0])) == ["c", "c", "a"]
    assert pick(["a"], np.array([], dtype=np.int64)) == []


def test_simple_urls_agree_with_the_regex_whatever_the_first_url() -> None:
    """URLs starting like the batch's first one skip the regex: the answer is the regex's
    for every URL, whichever URL comes first (valid, odd, empty, with a port, upper case)."""
    pool = [
        "https://a.example.org/p/1.jpg",
        "https://a.example.org/p/2.jpg?x=1",
        "https://a.example.org:8443/p/3.jpg",
        "HTTP://A.EXAMPLE.ORG/p/4.jpg",
        "https://a.example.org",
        "https://a.example.org#frag",
        "https://a.example.org.evil/p.jpg",
        "https://b.example.org/q.png",
        "ftp://a.example.org/p/1.jpg",
        "https://a.example.org:123456/p.jpg",
        "https://user@a.example.org/p.jpg",
        "https://a.example.\u212aorg/p.jpg",  # a Kelvin sign, not a k
        "https:/a.example.org/p.jpg",
        "",
        "https://a.example.org/\u00e9t\u00e9.jpg",
    ]
    rng = np.random.default_rng(9)
    for _ in range(200):
        values = [pool[i] for i in rng.integers(0, len(pool), size=int(rng.integers(1, 12)))]
        urls = pa.array(values, type=pa.string())
        expected = [re.match(SIMPLE_URL, v) is not None for v in values]
        assert simple_urls(urls).tolist() == expected, values


def _lowest_reference(groups: list[int], rank: list[int]) -> list[int]:
    best: dict[int, int] = {}
    for i, (g, r) in enumerate(zip(groups, rank, strict=True)):
        if g not in best or r < rank[best[g]]:
            best[g] = i
    return sorted(best.values())


@pytest.mark.parametrize("runs", [True, False])
def test_lowest_rank_per_group_matches_a_plain_loop(runs: bool) -> None:
    """Sorted runs (media after their occurrence) take the linear path, the rest the sort;
    both keep the lowest rank of each group and, of equal ranks, the first."""
    rng = np.random.default_rng(5)
    for size in (1, 2, 3, 50, 500):
        groups = rng.integers(0, max(size // 3, 1), size=size)
        if runs:
            groups.sort()
        rank = rng.integers(0, 4, size=size).astype(np.uint64)  # many ties
        got = lowest_per_group(groups, rank).tolist()
        assert got == _lowest_reference(groups.tolist(), rank.tolist())
    singles = np.arange(10)
    assert lowest_per_group(singles, np.zeros(10, dtype=np.uint64)).tolist() == list(range(10))


_PADDED = [
    "plain",
    " leading",
    "trailing\t",
    "\u00a0no-break space\u00a0",
    "\u3000ideographic\u3000",
    "caf\u00e9",
    "",
    "\u00e9t\u00e9",
    "x",
]


@pytest.mark.parametrize("start", [0, 1, 5])
def test_trim_equals_arrow_trim(start: int) -> None:
    """The shortcut never changes a value: the same strings as arrow's trim, sliced or not."""
    values = pa.array(_PADDED * 3).slice(start)
    assert trim(values).to_pylist() == pc.utf8_trim_whitespace(values).to_pylist()
    clean = pa.array(["a", "b c", "", "d"] * 3).slice(start)
    assert trim(clean) is clean  # nothing to trim: no copy
    padded = pa.array(["a ", "b"])
    assert trim(padded) is not padded


def test_media_strings_through_dictionaries_equal_plain_conversion() -> None:
    """Few distinct values: decoded through the dictionary; many: value by value. All give
    the trimmed strings (nulls as None)."""
    repeated = pa.array([" CC-BY ", "CC0", "\u00a0CC-BY-NC"] * 200)
    few_rows = pa.array([f" page {i} " for i in range(600)])
    varied = pa.array([f" page {i} " for i in range(4096)])
    for values in (repeated, few_rows, varied):
        assert python_strings(trim(values)) == [v.strip() for v in values.to_pylist()]
    names = pa.array([f"name {i % 40}" for i in range(4096)])
    assert python_strings(trim(names)) == names.to_pylist()
    short = pa.array([" a"] * 10)  # too short to bother with a dictionary
    assert python_strings(trim(short)) == ["a"] * 10
    gaps = pa.array(["x", None, "y", None] * 100)  # nulls: missing values
    assert python_strings(gaps) == gaps.to_pylist()


def test_streaming_equals_three_passes_with_default_batches(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Default batch sizes: the media columns with few distinct values of the real download
    go through their dictionaries, and the records are still those of the three passes."""
    decoded: list[set[Any]] = []  # the values of the columns decoded through their dictionary
    plain, plain_pick = python_strings, build_module.pick
    picks: list[int] = []

    def counting_pick(table: Any, index: np.ndarray) -> list[Any]:
        picks.append(len(table))
        return plain_pick(table, index)

    def strings(values: pa.Array) -> Any:
        before = len(picks)
        result = plain(values)
        if len(picks) > before:  # only the dictionary path picks from the distinct values
            decoded.append(set(result))
        return result

    monkeypatch.setattr(build_module, "pick", counting_pick)
    monkeypatch.setattr(build_module, "python_strings", strings)
    for options in ({"label": "speciesKey"}, {"label": "family", "license_info": False}):
        streamed = ArchiveSource(REAL)
        passes = ArchiveSource(REAL)
        passes.streaming = False
        got = list(streamed.records(**options))
        assert got and got == list(passes.records(**options))
        assert streamed.stats == passes.stats
    assert any("image/jpeg" in values for values in decoded)  # the format column
    assert any("iNaturalist" in values for values in decoded)  # the publisher column


def test_row_bits_remember_exactly_the_rows_added() -> None:
    rng = np.random.default_rng(1)
    bits, reference = RowBits(), set()
    for _ in range(30):
        rows = np.unique(rng.integers(0, 200_000, size=500))
        bits.add(rows)
        reference.update(rows.tolist())
        probe = rng.integers(0, 400_000, size=2000)
        assert bits.contains(probe).tolist() == [int(p) in reference for p in probe]
    assert bits.any()


def test_lines_longer_than_a_chunk_are_still_read() -> None:
    """The real download's header and rows (3.5 KiB) are longer than a 1 KiB chunk: the chunk
    grows until a line fits (arrow alone once read such a first block as an empty file)."""
    small = ArchiveSource(REAL, block_size=1 << 8)
    small.streaming = False
    default = ArchiveSource(REAL)
    default.streaming = False
    assert list(small.records(label="speciesKey")) == list(default.records(label="speciesKey"))
    assert small.stats.records == 1074


@pytest.mark.parametrize("block_size", [1 << 4, 1 << 6, 1 << 10])
def test_chunks_cut_at_line_ends_and_together_are_the_data(block_size: int) -> None:
    """Chunks share one buffer (reused, regrown for long lines, shrunk after): each copied
    when it comes, they are whole lines and add up to the member without its header."""
    rng = np.random.default_rng(8)
    lines = [b"h1\th2\n"] + [
        b"x" * int(rng.choice([0, 3, 40, 300, 5000])) + b"\t%d\n" % i for i in range(300)
    ]
    source = ArchiveSource(REAL, block_size=block_size)
    header, chunks = set(), []
    for first_line, chunk in source.reader.chunks(io.BytesIO(b"".join(lines)), source.core):
        header.add(first_line)
        chunks.append(bytes(chunk))
    assert header == {b"h1\th2"}
    assert all(c.endswith(b"\n") for c in chunks)
    assert b"".join(chunks) == b"".join(lines[1:])
    assert max(map(len, chunks)) < 4 * 5000 + 8 * block_size  # no runaway growth


def test_a_line_longer_than_the_limit_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(members_module, "MAX_LINE_BYTES", 2048)
    with pytest.raises(ArchiveError, match="line longer than 2048 bytes"):
        list(ArchiveSource(REAL, block_size=1 << 8).records(label="speciesKey"))


@pytest.mark.parametrize("streaming", [True, False])
def test_an_abandoned_reader_lets_the_interpreter_exit_cleanly(streaming: bool) -> None:
    """A script that takes a few records and exits while the archive is still being read
    (the read-ahead thread busy, the worker running) exits with 0 and prints nothing."""
    script = (
        "import sys\n"
        "from gbif_dl.sources.archive import ArchiveSource\n"
        "source = ArchiveSource(sys.argv[1], block_size=1 << 10, batch_rows=32)\n"
        f"source.streaming = {streaming}\n"
        "source.worker_min_bytes = 0\n"
        "records = source.records(label='speciesKey')\n"
        "print(next(records)['url'], next(records)['url'])\n"
    )
    assert _run_on_real(script).count("http") == 2


def test_reading_an_archive_does_not_import_pandas() -> None:
    """pyarrow imports pandas (tens of MB, a fraction of a second) on some calls when it is
    installed; the archive reader avoids them, and a forked worker inherits none of it."""
    script = (
        "import sys\n"
        "from gbif_dl.sources.archive import ArchiveSource\n"
        "n = sum(1 for _ in ArchiveSource(sys.argv[1]).records(label='speciesKey'))\n"
        "print(n, 'pandas' in sys.modules)\n"
    )
    assert _run_on_real(script) == "1074 False\n"


def test_zlib_reads_what_isal_reads(monkeypatch: pytest.MonkeyPatch, shuffled: Path) -> None:
    """Where ISA-L cannot be installed, zlib inflates the members: the same records."""
    import zlib

    fast = list(_source(shuffled, streaming=True).records(label="speciesKey"))
    fast_real = list(_source(REAL, streaming=False).records(label="speciesKey"))
    assert inflate_module.INFLATE is not zlib
    monkeypatch.setattr(inflate_module, "INFLATE", zlib)
    assert list(_source(shuffled, streaming=True).records(label="speciesKey")) == fast
    assert list(_source(REAL, streaming=False).records(label="speciesKey")) == fast_real


def test_media_positions_count_every_row_of_an_occurrence_across_batches() -> None:
    """Each row's place among its occurrence's rows in file order, whatever the batches: with
    ``keep_runs`` a key whose rows come back later is placed after its earlier rows (by
    ``finish``), else the repeat is reported (the streaming join then falls back)."""
    rng = np.random.default_rng(12)
    for _ in range(200):
        keys = np.repeat(rng.integers(0, 6, size=20), rng.integers(1, 4, size=20))
        expected, seen = [], Counter()
        for key in keys.tolist():
            expected.append(seen[key])
            seen[key] += 1
        cuts = np.sort(rng.integers(0, keys.size, size=3))
        kept, streamed = MediaPositions(keep_runs=True), MediaPositions(keep_runs=False)
        places, runs, repeated = [], [], False
        for part in np.split(keys, cuts):
            place, run, _ = kept.add(part)
            places.append(place)
            runs.append(run)
            repeated |= streamed.add(part)[2]
        got = np.concatenate(places)
        base = kept.finish()
        if base is not None:
            got = got + base[np.concatenate(runs)]
        assert got.tolist() == expected
        change = np.flatnonzero(keys[1:] != keys[:-1])
        run_keys = np.append(keys[change], keys[-1])
        assert repeated == (len(set(run_keys.tolist())) < run_keys.size)
        assert (base is not None) == repeated


def test_an_occurrence_whose_rows_are_apart_hands_over_to_the_three_passes(
    shuffled: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One occurrence's last row moved behind the next occurrence's rows: the places of its
    rows need every earlier row, so the streaming join hands over; the records are those of
    the three passes."""
    with zipfile.ZipFile(shuffled) as archive:
        _, *rows = archive.read("multimedia.txt").decode().splitlines(keepends=True)
    ids = [row.split("\t", 1)[0] for row in rows]
    at = next(i for i in range(len(rows) // 2, len(rows) - 2) if ids[i] == ids[i - 1] != ids[i + 1])

    def swap(rows: list[str]) -> list[str]:
        return [*rows[:at], rows[at + 1], rows[at], *rows[at + 2 :]]

    apart = _rewrite_media(shuffled, tmp_path / "apart.zip", swap)
    caplog.set_level(logging.INFO, logger="gbif_dl.sources.archive")
    for options in ({"label": "speciesKey"}, {"label": "speciesKey", "seed": 3}):
        got, _, expected, _ = _both(apart, **options)
        assert any("three passes" in message for message in caplog.messages)
        _invariants(got)
        assert sorted(r["url"] for r in got) == sorted(r["url"] for r in expected)


def test_a_line_longer_than_an_arrow_block_is_always_noticed() -> None:
    """Arrow cannot parse a line over more than two blocks: the check that sends such a chunk
    to a one-block parse never misses a longer line (and lets short lines through), without
    reading arrow's error messages."""
    from gbif_dl.sources.archive.members import _may_hold_long_line

    rng = np.random.default_rng(13)
    for _ in range(500):
        lengths = rng.choice([0, 3, 40, 300, 2000], size=int(rng.integers(1, 40)))
        data = b"\n".join(b"x" * int(n) for n in lengths) + (b"\n" if rng.random() < 0.5 else b"")
        limit = int(rng.choice([16, 100, 700, 5000]))
        longest = int(max(lengths))
        noticed = _may_hold_long_line(memoryview(data), limit)
        if longest > limit:
            assert noticed
        if longest < limit // 2:
            assert not noticed
