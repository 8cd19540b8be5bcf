"""Class indices (classes.json): sorted at first, appended later, never renumbered."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gbif_dl.errors import OutputError
from gbif_dl.writers.classes import (
    CLASSES_NAME,
    NO_CLASS,
    ClassIndex,
    class_label,
    load_classes,
    update_classes,
)


def test_first_labels_are_sorted_and_later_ones_appended(tmp_path: Path) -> None:
    """A first update numbers labels in sorted order; later new labels go after, sorted among
    themselves, and no existing label changes its index."""
    first = update_classes(tmp_path, ["wasp", "bee", "ant", "bee"])
    assert first.labels == ["ant", "bee", "wasp"]
    second = update_classes(tmp_path, ["moth", "aphid", "bee"])
    assert second.labels == ["ant", "bee", "wasp", "aphid", "moth"]
    reloaded = load_classes(tmp_path)
    assert [reloaded.index(label) for label in ["ant", "bee", "wasp", "aphid", "moth"]] == [
        0,
        1,
        2,
        3,
        4,
    ]


def test_file_format_and_names(tmp_path: Path) -> None:
    """classes.json lists index, label and GBIF name; a missing name is filled in later, a
    known one is never replaced."""
    update_classes(tmp_path, ["5352251", "1311477"], {"5352251": "Apis mellifera"})
    update_classes(tmp_path, ["5352251"], {"5352251": "Other", "1311477": "Bombus terrestris"})
    data = json.loads((tmp_path / CLASSES_NAME).read_text(encoding="utf-8"))
    assert data["classes"] == [
        {"index": 0, "label": "1311477", "name": "Bombus terrestris"},
        {"index": 1, "label": "5352251", "name": "Apis mellifera"},
    ]


def test_unchanged_index_is_not_rewritten(tmp_path: Path) -> None:
    """An update that adds nothing leaves the file untouched (same inode and mtime)."""
    update_classes(tmp_path, ["a", "b"])
    before = (tmp_path / CLASSES_NAME).stat()
    update_classes(tmp_path, ["b", None, {"gbifID": 1}])
    after = (tmp_path / CLASSES_NAME).stat()
    assert (before.st_ino, before.st_mtime_ns) == (after.st_ino, after.st_mtime_ns)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("Apis mellifera", "Apis mellifera"),
        (5352251, "5352251"),
        (None, None),
        ("", None),
        ({"gbifID": 1}, None),
        ('{"gbifID": 1}', None),  # a dict label as the manifest stores it
        ("{not json}", "{not json}"),
    ],
)
def test_class_label(label: object, expected: str | None) -> None:
    """Only real labels are classes; no label and whole-record labels have none."""
    assert class_label(label) == expected


def test_get_returns_no_class_for_unknown_or_missing_labels() -> None:
    """get() maps unlabeled and unknown records to -1."""
    classes = ClassIndex(labels=["a", "b"])
    assert (classes.get("b"), classes.get(None), classes.get("z")) == (1, NO_CLASS, NO_CLASS)
    assert "a" in classes and "z" not in classes and len(classes) == 2


@pytest.mark.parametrize(
    "content",
    [
        "not json",
        '{"classes": {"a": 0}}',
        '{"classes": [{"index": 1, "label": "a"}]}',
        '{"classes": [{"index": 0, "label": "a"}, {"index": 1, "label": "a"}]}',
    ],
)
def test_corrupt_file_is_an_output_error(tmp_path: Path, content: str) -> None:
    """A damaged classes.json is reported (with what to do), never silently renumbered."""
    (tmp_path / CLASSES_NAME).write_text(content, encoding="utf-8")
    with pytest.raises(OutputError, match=r"classes\.json"):
        update_classes(tmp_path, ["a"])
