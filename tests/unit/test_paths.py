"""Paths under the output root (gbif_dl.writers.paths), CSV cells (gbif_dl.writers.cells) and
file-name claims (gbif_dl.writers.imagefolder.NameClaims): links never followed, formulas never
run, two URLs never one file."""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import pytest

from gbif_dl.errors import OutputError
from gbif_dl.fetch.result import FetchResult
from gbif_dl.manifest import FAILED, manifest_row
from gbif_dl.writers._atomic import atomic_write_bytes, remove_temp_files, temp_path
from gbif_dl.writers.cells import SafeCsvWriter, spreadsheet_safe
from gbif_dl.writers.imagefolder import ImageFolderWriter, NameClaims, safe_basename
from gbif_dl.writers.paths import (
    SafeFolders,
    UnsafePathError,
    check_state_files,
    open_state_file,
    remove_inside,
)


def _outside(tmp_path: Path) -> Path:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    return outside


def test_safe_folders_refuse_a_link_at_any_depth(tmp_path: Path) -> None:
    """A link anywhere between the root and the folder is refused, and nothing is made there."""
    outside = _outside(tmp_path)
    root = tmp_path / "root"
    (root / "train").mkdir(parents=True)
    os.symlink(outside, root / "train" / "bee")
    folders = SafeFolders(root)
    with pytest.raises(UnsafePathError, match="symbolic link"):
        folders.ensure("train/bee/deeper")
    assert sorted(p.name for p in outside.iterdir()) == ["keep.txt"]
    assert folders.ensure("train/wasp").is_dir()  # other folders still work


@pytest.mark.parametrize("rel", ["../x", "a/../../x", "./a"])
def test_safe_folders_refuse_dot_components(tmp_path: Path, rel: str) -> None:
    """`..` and `.` never reach the filesystem."""
    with pytest.raises(UnsafePathError):
        SafeFolders(tmp_path).ensure(rel)


def test_a_file_where_a_folder_belongs_is_refused(tmp_path: Path) -> None:
    (tmp_path / "bee").write_text("a file")
    with pytest.raises(UnsafePathError, match="not a folder"):
        SafeFolders(tmp_path).ensure("bee")


def test_remove_inside_never_deletes_through_a_linked_folder(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(outside, root / "bee")
    with pytest.raises(UnsafePathError):
        remove_inside(root, "bee/keep.txt")
    assert (outside / "keep.txt").read_text() == "keep"


def test_state_files_are_opened_without_following_links(tmp_path: Path) -> None:
    """Opening a state file that is a link raises OutputError naming it; the target is kept."""
    victim = tmp_path / "victim.txt"
    victim.write_text("victim")
    os.symlink(victim, tmp_path / "journal.jsonl")
    with pytest.raises(OutputError, match=r"journal\.jsonl' is a symbolic link"):
        open_state_file(tmp_path / "journal.jsonl", "a")
    with pytest.raises(OutputError, match="Remove the link"):
        check_state_files(tmp_path, ["journal.jsonl"])
    assert victim.read_text() == "victim"


def test_the_sweep_skips_unmarked_files_and_linked_folders(tmp_path: Path) -> None:
    outside = _outside(tmp_path)
    marked = temp_path(outside / "a.jpg")
    marked.write_bytes(b"x")
    os.symlink(outside, tmp_path / "link")
    assert remove_temp_files(tmp_path / "link") == 0 and marked.exists()
    (tmp_path / ".b.jpg.0123456789ab.tmp").write_bytes(b"the user's")
    assert remove_temp_files(tmp_path) == 0


def test_atomic_writes_never_follow_a_link_at_the_final_name(tmp_path: Path) -> None:
    """A link at the final name is replaced, its target untouched."""
    outside = _outside(tmp_path)
    os.symlink(outside / "keep.txt", tmp_path / "a.txt")
    atomic_write_bytes(tmp_path / "a.txt", b"new")
    assert (outside / "keep.txt").read_text() == "keep"
    assert not (tmp_path / "a.txt").is_symlink() and (tmp_path / "a.txt").read_bytes() == b"new"


@pytest.mark.parametrize("text", ["=1+1", "+1", "-1", "@x", "\tx", "\rx"])
def test_formula_cells_get_a_quote(text: str) -> None:
    assert spreadsheet_safe(text) == "'" + text
    out = io.StringIO()
    SafeCsvWriter(out).writerow(["a", text])
    assert list(csv.reader(io.StringIO(out.getvalue()))) == [["a", "'" + text]]


def test_harmless_cells_are_unchanged() -> None:
    assert [spreadsheet_safe(v) for v in ("Ann", "a=b", "", None, 3)] == ["Ann", "a=b", "", "", "3"]


@pytest.mark.parametrize("name", ["classes", "manifest", "ATTRIBUTION", "metadata", "CON"])
def test_basenames_that_name_state_files_are_escaped(name: str) -> None:
    stem = safe_basename({"url": "http://h/a.jpg", "basename": name})
    assert stem != name and stem.startswith(name + "-")


def test_name_claims_disambiguate_a_second_url_only() -> None:
    claims = NameClaims()
    assert claims.claim("bee", "x", "http://h/1") == ("x", False)
    second, known = claims.claim("BEE", "X", "http://h/2")  # case-insensitive filesystems
    assert second != "X" and known
    assert claims.claim("bee", second, "http://h/2") == (second, True)
    assert claims.claim("wasp", "x", "http://h/2") == ("x", False)  # another folder


def test_the_writer_gives_two_urls_two_files(tmp_path: Path) -> None:
    writer = ImageFolderWriter(tmp_path)
    paths = []
    for i in range(2):
        record = {"url": f"http://h/{i}.jpg", "basename": "x", "label": "bee"}
        result = FetchResult(record=record, ok=True, body=bytes([i]) * 3, ext=".jpg")
        paths.append(writer.write(result))
    assert paths[0] == "bee/x.jpg" and paths[1] != paths[0]
    assert (tmp_path / paths[1]).read_bytes() == b"\x01" * 3


def test_manifest_rows_never_hold_credentials() -> None:
    row = manifest_row(
        {"url": "https://ann:pw@h.example/a.jpg"},
        status=FAILED,
        detail="401 at https://ann:pw@h.example/a.jpg (ann:pw@h.example)",
    )
    assert row["url"] == "https://h.example/a.jpg"
    assert "pw" not in row["detail"] and "ann" not in row["detail"]
