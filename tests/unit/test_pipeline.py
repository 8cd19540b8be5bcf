"""The pieces of the one download core: stats, options, the Writer base, the output registry,
input normalisation, and the mapping of a query file onto the options objects."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gbif_dl.config import OUTPUT_LAYOUTS, RunConfig
from gbif_dl.errors import ConfigError
from gbif_dl.fetch.engine import DEFAULT_FETCH
from gbif_dl.fetch.result import FetchResult, Reason
from gbif_dl.options import RUNNER_NAMES, DownloadOptions, SamplingOptions
from gbif_dl.pipeline.inputs import INVALID_ITEM, as_sync_items, normalize_item
from gbif_dl.pipeline.stats import MIN_ITEMS_FOR_THRESHOLD, Counters, DownloadStats
from gbif_dl.shards.run import ShardResult
from gbif_dl.writers import OUTPUTS, Writer
from gbif_dl.writers.hf import HFWriter
from gbif_dl.writers.imagefolder import ImageFolderWriter
from gbif_dl.writers.registry import check_writer_options, make_writer, writer_class
from gbif_dl.writers.webdataset import WebDatasetWriter

# --- stats ------------------------------------------------------------------------------------


def test_stats_combine_adds_counts_reasons_and_bytes_and_keeps_aborted() -> None:
    """Combining stats adds every count, merges the reasons by adding, and is aborted when any
    part was; the other fields come from the keywords."""
    one = DownloadStats(success=2, failed=1, skipped=0, reasons={"timeout": 1}, bytes=10)
    two = DownloadStats(success=1, failed=2, skipped=4, reasons={"timeout": 1, "http_status": 1},
                        bytes=5, aborted=True)  # fmt: skip
    total = DownloadStats.combine([one, two], root="data", elapsed_s=1.5)
    assert (total.success, total.failed, total.skipped, total.bytes) == (3, 3, 4, 15)
    assert total.reasons == {"timeout": 2, "http_status": 1}
    assert total.aborted and total.root == "data" and total.elapsed_s == 1.5
    assert (one + two).reasons == total.reasons
    assert not (one + one).aborted
    assert DownloadStats.combine([]) == DownloadStats()


def test_shard_results_are_stats_and_combine_with_them() -> None:
    """A shard's result is a DownloadStats (the one stats type), so a job sums its shards."""
    parts = [ShardResult(shard_id=0, success=3, bytes=30), ShardResult(shard_id=1, failed=1,
             reasons={"timeout": 1})]  # fmt: skip
    total = DownloadStats.combine([*parts, DownloadStats(skipped=2)])
    assert (total.success, total.failed, total.skipped, total.bytes) == (3, 1, 2, 30)
    assert dict(parts[0])["success"] == 3 and parts[0]["bytes"] == 30


def test_counters_build_stats_and_judge_the_fail_threshold() -> None:
    """Counters count outcomes and reasons; the threshold is judged only from
    MIN_ITEMS_FOR_THRESHOLD fetched items on, and never without a threshold."""
    counters = Counters()
    for _ in range(MIN_ITEMS_FOR_THRESHOLD - 1):
        counters.count("failed", reason="timeout")
    assert not counters.over_threshold(0.0)
    counters.count("success", nbytes=7)
    assert counters.over_threshold(0.5) and not counters.over_threshold(None)
    assert not counters.over_threshold(1.0)
    stats = counters.stats(root="r")
    assert (stats.success, stats.failed, stats.bytes, stats.root) == (1, 49, 7, "r")
    assert stats.reasons == {"timeout": 49}


# --- options ----------------------------------------------------------------------------------


def test_download_options_are_frozen_keyword_only_and_default_to_the_fetch_defaults() -> None:
    options = DownloadOptions()
    assert options.fetch is DEFAULT_FETCH and options.root == "data"
    with pytest.raises(TypeError):
        DownloadOptions("data")  # type: ignore[misc]
    with pytest.raises(AttributeError):
        options.root = "x"  # type: ignore[misc]
    assert options.replace(seed=3).seed == 3


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"splits": {"a": 1.0}, "random_subsets": {"a": 1.0}}, "cannot be combined"),
        ({"splits": {"a": 1.0}, "split_by": ""}, "split_by must be"),
        ({"splits": {"a": 0.5, "b": 0.1}}, "must add up to 1.0"),
        ({"fail_threshold": 1.5}, "fail_threshold"),
        ({"fail_threshold": True}, "fail_threshold"),
        ({"output": "imagefolders"}, "did you mean 'imagefolder'"),
        ({"output": "imagefolder", "shard_size": 5}, "does not apply to output='imagefolder'"),
        ({"output": "webdataset", "shard_size": 0}, "shard_size must be a positive integer"),
        ({"runner": "spark"}, "unknown runner 'spark'"),
        ({"runner": "local", "output": "webdataset"}, "drop runner= for output='webdataset'"),
        ({"runner": "local", "shard_bytes": 10}, "shard_bytes=10"),
        ({"runner": "local", "shard_size": 0}, "shard_size must be a positive integer"),
        ({"fetch": {"per_host": 2}}, "fetch must be a FetchConfig"),
    ],
)
def test_download_options_reject_bad_values_before_any_io(
    values: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        DownloadOptions(**values)


def test_download_options_from_keywords_fill_the_nested_fetch_config() -> None:
    """download()'s fetch keywords become the nested FetchConfig; None keeps the default;
    tcp_connections (0.1) becomes concurrency with a DeprecationWarning."""
    options = DownloadOptions.from_keywords(
        {"retries": 1, "per_host": 3, "max_size": 64, "proxy": None, "output": "hf"}
    )
    assert options.fetch.retry.retries == 1 and options.fetch.per_host == 3
    assert options.fetch.max_size == 64 and options.fetch.proxy is None
    assert options.output == "hf"
    with pytest.warns(DeprecationWarning, match="tcp_connections"):
        old = DownloadOptions.from_keywords({}, {"tcp_connections": 7})
    assert old.fetch.concurrency == 7
    with pytest.raises(ConfigError, match="did you mean 'per_host'"):
        DownloadOptions.from_keywords({}, {"per_hosts": 2})
    with pytest.raises(ConfigError, match="retries must be >= 0"):
        DownloadOptions.from_keywords({"retries": -1})
    with pytest.raises(ConfigError, match="concurrency must be a positive integer"):
        DownloadOptions.from_keywords({"concurrency": 0})


def test_run_config_maps_onto_the_options_objects() -> None:
    """A query file's keys become SamplingOptions and DownloadOptions with the same values."""
    config = RunConfig.from_mapping(
        {
            "queries": {"speciesKey": [1]},
            "label": "speciesKey",
            "split_streams_by": "speciesKey",
            "nb_samples": 20,
            "licenses": ["CC0_1_0"],
            "seed": 4,
            "root": "out",
            "output": "webdataset",
            "shard_size": 50,
            "splits": {"train": 0.5, "test": 0.5},
            "per_host": 2,
            "max_size": 128,
        }
    )
    sampling = config.sampling_options()
    assert isinstance(sampling, SamplingOptions)
    assert (sampling.label, sampling.split_streams_by, sampling.nb_samples) == (
        "speciesKey",
        ("speciesKey",),
        20,
    )
    assert sampling.licenses == ("CC0_1_0",) and sampling.seed == 4
    download = config.download_options(progress=False)
    assert (download.root, download.output, download.shard_size, download.seed) == (
        "out",
        "webdataset",
        50,
        4,
    )
    assert download.splits == {"train": 0.5, "test": 0.5} and download.progress is False
    assert (download.fetch.per_host, download.fetch.max_size) == (2, 128)
    assert RunConfig().download_options().seed == 0  # no seed in the file: the default


# --- the Writer base and the registry ---------------------------------------------------------


class _Flat(Writer):
    """A writer that overrides only write()."""

    def write(self, result: FetchResult) -> str:
        name = f"{result.record['basename']}.bin"
        (self.root / name).write_bytes(result.body or b"")
        return name


def test_writer_base_defaults_do_nothing_or_read_the_root(tmp_path: Path) -> None:
    """A writer that only implements write() gets every other hook the core calls: files are
    durable on write, stored files stay where they are, and there is nothing to finalize."""
    writer = _Flat(tmp_path)
    path = writer.write(FetchResult(record={"url": "u", "basename": "a"}, ok=True, body=b"xy"))
    assert not writer.defers_commit and not writer.shardable
    assert writer.committed() == []
    assert writer.find_existing({"url": "u"}) is None
    assert writer.is_stored(path) and not writer.is_stored("missing.bin")
    assert writer.read_stored(path) == b"xy"
    assert writer.placement({"label": "x", "subset": "train"}, path) == path
    assert writer.check_options(shard_size=3) is None
    writer.finalize(tmp_path / "manifest.parquet")  # nothing to do, no file needed
    writer.close()
    with pytest.raises(NotImplementedError):
        writer.move_stored(path, "b.bin")
    with pytest.raises(NotImplementedError):
        Writer(tmp_path).write(FetchResult(record={"url": "u"}, ok=True, body=b""))


def test_every_registered_writer_is_a_writer_subclass(tmp_path: Path) -> None:
    """The registry is the one list of layouts; the query file reads its names; each class is a
    Writer, the ones a runner can shard are marked."""
    assert tuple(OUTPUTS) == OUTPUT_LAYOUTS
    for name in OUTPUTS:
        assert issubclass(writer_class(name), Writer)
    assert [n for n in OUTPUTS if writer_class(n).shardable] == ["imagefolder", "hf"]
    assert WebDatasetWriter.defers_commit and not ImageFolderWriter.defers_commit
    shard_writer = make_writer("hf", tmp_path, shard=True)
    assert isinstance(shard_writer, HFWriter)
    assert not shard_writer.clean_temp_files  # shards share folders: the job sweeps temp files
    assert make_writer("hf", tmp_path).clean_temp_files  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="cannot be written in shards"):
        make_writer("webdataset", tmp_path, shard=True)
    assert check_writer_options("webdataset", {"shard_bytes": None}) == {}
    assert set(RUNNER_NAMES) == {"local", "dask"}


def test_imagefolder_writer_moves_a_stored_file_to_its_new_folder(tmp_path: Path) -> None:
    """The layout knowledge of a rerun lives in the writer: placement() says where a stored
    file belongs now (no I/O), move_stored() puts it there."""
    writer = ImageFolderWriter(tmp_path)
    record = {"url": "http://h/a.jpg", "basename": "abc", "label": "bee", "subset": "train"}
    path = writer.write(FetchResult(record=record, ok=True, body=b"\xff\xd8\xff", ext=".jpg"))
    assert writer.placement(record, path) == path == "train/bee/abc.jpg"
    moved = {**record, "subset": "val"}
    target = writer.placement(moved, path)
    assert target == "val/bee/abc.jpg" and (tmp_path / path).is_file()
    writer.move_stored(path, target)
    assert not (tmp_path / path).exists() and writer.read_stored(target) == b"\xff\xd8\xff"
    assert writer.placement({**record, "subset": None, "label": None}, target) == "abc.jpg"
    with pytest.raises(PermissionError):
        writer.move_stored(target, "../outside.jpg")


# --- inputs -----------------------------------------------------------------------------------


def test_normalize_item_gives_records_or_the_reason_they_cannot_be_fetched() -> None:
    url = "http://h.example/a.jpg"
    record, problem, _ = normalize_item(f"  {url} ", lambda r: "train")
    assert problem is None and record["url"] == url and record["subset"] == "train"
    assert record["basename"]
    kept, _, _ = normalize_item({"url": url, "subset": "test"}, lambda r: "train")
    assert kept["subset"] == "test"  # an item's own subset wins
    assert normalize_item({"url": "ftp://h/a.jpg"}, None).problem is Reason.UNSAFE_URL
    assert normalize_item({"label": "x"}, None).problem is Reason.INVALID
    bad = normalize_item(3.5, None)
    assert bad.problem is Reason.INVALID and bad.record["url"].startswith("invalid:")
    # a shard plan stores an invalid item with its detail; the shard reads back the same row
    again = normalize_item({**bad.record, INVALID_ITEM: bad.detail}, None)
    assert again == bad


def test_the_sharded_path_reads_a_synchronous_input_as_it_is() -> None:
    """A list or a generator reaches the shard planner unchanged (no event loop, no thread);
    a file of URLs is read line by line; an async generator is the one form pumped."""

    def generate() -> Iterator[str]:
        yield "http://h.example/a.jpg"

    generator = generate()
    assert as_sync_items(generator) is generator
    items = ["http://h.example/a.jpg"]
    assert as_sync_items(items) is items

    async def agenerate() -> Any:
        yield "http://h.example/b.jpg"

    assert list(as_sync_items(agenerate())) == ["http://h.example/b.jpg"]
    with pytest.raises(ConfigError, match="neither an existing text file"):
        as_sync_items("no-such-file.txt")
