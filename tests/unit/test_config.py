"""Query files (TOML and YAML) are read, validated and merged with flags before any request."""

from __future__ import annotations

from pathlib import Path

import pytest

from gbif_dl.config import (
    CONFIG_KEYS,
    OUTPUT_LAYOUTS,
    RUNNER_NAMES,
    RunConfig,
    load_config,
    suggest_key,
)
from gbif_dl.errors import ConfigError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

TOML = """
label = "speciesKey"
split_streams_by = "speciesKey"
nb_samples = 120
seed = 7
licenses = ["CC0_1_0", "CC_BY_4_0"]
root = "bees"
output = "hf"
splits = { train = 0.8, val = 0.1, test = 0.1 }
max_size = 256

[queries]
speciesKey = [1, 2]
country = "FR"
"""

YAML = """
queries:
  speciesKey: [1, 2]
  country: FR
label: speciesKey
split_streams_by: speciesKey
nb_samples: 120
seed: 7
licenses: [CC0_1_0, CC_BY_4_0]
root: bees
output: hf
splits: {train: 0.8, val: 0.1, test: 0.1}
max_size: 256
"""


def test_toml_and_yaml_give_the_same_config(tmp_path: Path) -> None:
    """The same keys in TOML and YAML produce identical configurations."""
    (tmp_path / "q.toml").write_text(TOML)
    (tmp_path / "q.yaml").write_text(YAML)
    a = load_config(tmp_path / "q.toml")
    b = load_config(tmp_path / "q.yaml")
    assert a == b
    assert a.queries == {"speciesKey": [1, 2], "country": "FR"}
    assert (a.root, a.output) == ("bees", "hf")  # 'root' is the folder, 'output' the layout
    assert a.splits == {"train": 0.8, "val": 0.1, "test": 0.1}
    assert a.source == "search"
    assert a.generate_kwargs()["nb_samples"] == 120
    assert a.download_kwargs() == {
        "root": "bees",
        "output": "hf",
        "splits": {"train": 0.8, "val": 0.1, "test": 0.1},
        "seed": 7,
        "max_size": 256,
    }


def test_unknown_key_suggests_the_closest(tmp_path: Path) -> None:
    """A misspelt key is an error naming the key and the closest valid one."""
    (tmp_path / "q.toml").write_text("nb_sample = 3\n[queries]\nspeciesKey = [1]\n")
    with pytest.raises(ConfigError, match=r"unknown key 'nb_sample'; did you mean 'nb_samples'"):
        load_config(tmp_path / "q.toml")


def test_unknown_key_far_from_everything_lists_valid_keys() -> None:
    """With no close key the message lists the valid ones."""
    with pytest.raises(ConfigError, match=r"valid keys: .*nb_samples"):
        RunConfig.from_mapping({"zzzzzz": 1})


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"nb_samples": "ten"}, "nb_samples must be an integer"),
        ({"weighted_streams": 1}, "weighted_streams must be true or false"),
        ({"nb_samples": True}, "nb_samples must be an integer"),
        ({"splits": {"train": 0.5, "test": 0.2}}, "sum to 1"),
        ({"splits": {"train": "most"}}, r"splits.train must be a fraction"),
        ({"queries": {"a": 1}, "urls": "x.txt"}, "choose one source"),
        ({"fail_threshold": 2}, "between 0 and 1"),
        ({"max_size": 0}, "max_size must be a positive"),
        ({"nb_samples": -5}, "positive number or -1"),
    ],
)
def test_bad_values_are_config_errors(data: dict, pattern: str) -> None:
    """Wrong types and impossible combinations are rejected with a message saying what to fix."""
    with pytest.raises(ConfigError, match=pattern):
        RunConfig.from_mapping(data)


def test_aliases_cannot_be_given_twice() -> None:
    """'random_subsets' and 'splits' are the same key: giving both is an error."""
    with pytest.raises(ConfigError, match="mean the same"):
        RunConfig.from_mapping({"splits": {"a": 1.0}, "random_subsets": {"b": 1.0}})


@pytest.mark.parametrize("folder", ["bees", "data/plants", "webdataset-out"])
def test_old_style_output_folder_says_to_use_root(tmp_path: Path, folder: str) -> None:
    """'output' used to name the folder; now it is the layout, and a folder there is an error
    that names the layouts and says to write root = ... instead."""
    (tmp_path / "q.toml").write_text(f'output = "{folder}"\n[queries]\nspeciesKey = [1]\n')
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "q.toml")
    message = str(info.value)
    assert str(tmp_path / "q.toml") in message
    assert f"root = '{folder}'" in message and "'imagefolder', 'webdataset', 'hf'" in message


def test_output_layouts_and_runner_options() -> None:
    """output, shard and runner keys reach download(); the layout names and runner names are
    the ones download() and the runners accept."""
    from gbif_dl.io import OUTPUTS
    from gbif_dl.runners import RUNNERS

    assert tuple(OUTPUTS) == OUTPUT_LAYOUTS and tuple(RUNNERS) == RUNNER_NAMES
    assert RunConfig().download_kwargs() == {"root": "data", "output": "imagefolder"}
    wds = RunConfig.from_mapping({"output": "webdataset", "shard_size": 500, "shard_bytes": 2**20})
    assert wds.download_kwargs() == {
        "root": "data",
        "output": "webdataset",
        "shard_size": 500,
        "shard_bytes": 2**20,
    }
    dask = RunConfig.from_mapping(
        {"runner": "dask", "workers": 3, "dask_address": "tcp://10.0.0.5:8786", "shard_size": 9}
    )
    assert dask.download_kwargs() == {
        "root": "data",
        "output": "imagefolder",
        "runner": "dask",
        "workers": 3,
        "dask_address": "tcp://10.0.0.5:8786",
        "shard_size": 9,
    }
    assert RunConfig.from_mapping({"output": "hf", "runner": "local"}).runner == "local"
    assert RunConfig.from_mapping({"output": None}).output == "imagefolder"  # YAML `output:`


def test_retry_failed_reaches_download() -> None:
    """``retry_failed = true`` in a query file (or --retry-failed) reaches download()."""
    config = RunConfig.from_mapping({"retry_failed": True})
    assert config.download_kwargs()["retry_failed"] is True
    assert config.download_options().retry_failed is True
    assert "retry_failed" not in RunConfig().download_kwargs()
    assert RunConfig().download_options().retry_failed is False
    with pytest.raises(ConfigError, match="retry_failed"):
        RunConfig.from_mapping({"retry_failed": "yes"})


@pytest.mark.parametrize(
    ("data", "pattern"),
    [
        ({"output": "webdatset"}, r"did you mean 'webdataset'\?.*root = 'webdatset'"),
        ({"output": 3}, "output must be a string"),
        ({"runner": "spark"}, r"runner = 'spark' is unknown; use one of 'local', 'dask'"),
        ({"runner": "local", "output": "webdataset"}, "drop runner for WebDataset"),
        ({"shard_bytes": 100}, "needs output = 'webdataset' and no runner"),
        ({"shard_size": 100}, "shard_size needs output = 'webdataset'"),
        ({"shard_size": 0, "output": "webdataset"}, "shard_size must be a positive"),
        ({"workers": 2}, "workers needs a runner"),
        ({"workers": 0, "runner": "local"}, "workers must be a positive"),
        ({"dask_address": "tcp://h:1", "runner": "local"}, "dask_address needs runner = 'dask'"),
        ({"dask_address": " ", "runner": "dask"}, "scheduler address"),
    ],
)
def test_bad_layout_and_runner_values(data: dict, pattern: str) -> None:
    """Impossible layouts, runners and combinations fail before any request, saying the fix."""
    with pytest.raises(ConfigError, match=pattern):
        RunConfig.from_mapping(data)


def test_flags_override_the_file_and_replace_its_source(tmp_path: Path) -> None:
    """Command-line values win; a new source replaces the file's source."""
    (tmp_path / "q.yaml").write_text(YAML)
    base = load_config(tmp_path / "q.yaml")
    merged = base.merged({"nb_samples": 10, "root": None, "urls": "list.txt"})
    assert merged.nb_samples == 10
    assert merged.root == "bees"  # None means "not given"
    assert merged.source == "urls" and merged.queries is None
    with pytest.raises(ConfigError, match="did you mean 'nb_samples'"):
        base.merged({"nb_sampels": 3})


def test_relative_paths_resolve_against_the_file(tmp_path: Path) -> None:
    """'urls' and a local 'dwca' zip in a query file are relative to the file, not the cwd."""
    sub = tmp_path / "cfg"
    sub.mkdir()
    (sub / "u.toml").write_text('urls = "list.txt"\n')
    (sub / "d.yaml").write_text("dwca: archives/a.zip\n")
    (sub / "k.yaml").write_text("dwca: 0022697-200613084148143\n")
    assert Path(load_config(sub / "u.toml").urls or "") == sub / "list.txt"
    assert Path(load_config(sub / "d.yaml").dwca or "") == sub / "archives" / "a.zip"
    assert load_config(sub / "k.yaml").dwca == "0022697-200613084148143"


@pytest.mark.parametrize(
    ("name", "text", "pattern"),
    [
        ("q.toml", "queries = [", "not valid TOML"),
        ("q.yaml", "queries: [unclosed", "not valid YAML"),
        ("q.json", "{}", r"must end in \.toml, \.yaml or \.yml"),
        ("q.yaml", "- just\n- a list\n", "must be a table of keys"),
    ],
)
def test_unreadable_files_are_config_errors(
    tmp_path: Path, name: str, text: str, pattern: str
) -> None:
    """Syntax errors and unknown formats name the file and the problem."""
    (tmp_path / name).write_text(text)
    with pytest.raises(ConfigError, match=pattern):
        load_config(tmp_path / name)


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A missing query file is reported as such."""
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "nope.toml")


def test_suggest_key_is_case_insensitive() -> None:
    """Suggestions ignore case and return the valid spelling."""
    assert suggest_key("SPLIT_STREAMS_BY") == "split_streams_by"
    assert suggest_key("licence") == "licenses"
    assert "base_dir" not in CONFIG_KEYS


@pytest.mark.parametrize("name", ["query.toml", "query.yaml"])
def test_shipped_examples_are_valid(name: str) -> None:
    """The example query files in examples/ load without error and describe the same run."""
    config = load_config(EXAMPLES / name)
    assert config.source == "search"
    assert config.nb_samples and config.split_streams_by
    other = "query.yaml" if name == "query.toml" else "query.toml"
    assert load_config(EXAMPLES / other).queries == config.queries


def test_content_options_reach_download() -> None:
    """The duplicate options of a query file (or their flags) reach download()."""
    config = RunConfig.from_mapping(
        {"content_hashes": True, "near_duplicate_distance": 4, "placeholder_occurrences": 0}
    )
    policy = config.download_options().content_policy()
    assert policy.enabled and policy.near_distance == 4 and policy.placeholders is None
    assert "content_hashes" not in RunConfig().download_kwargs()
    with pytest.raises(ConfigError, match="near_duplicate_distance"):
        RunConfig.from_mapping({"near_duplicate_distance": "six"})
