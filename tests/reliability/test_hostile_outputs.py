"""Hostile data on the filesystem side (issue 21): links, state-file names, collisions, formulas,
credentials. Each test uses the input of the issue's table row and checks the outcome: nothing
outside the root written or deleted, the run completes or fails with a message naming the
problem and the fix, and a rerun works.

Every download talks real HTTP over loopback to the project's media hosts.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from gbif_dl.cli.main import main
from gbif_dl.errors import OutputError
from gbif_dl.io import download
from gbif_dl.manifest import JOURNAL_NAME, MANIFEST_NAME, read_manifest
from gbif_dl.pipeline.root import LOCK_NAME
from gbif_dl.shards.run import remove_leftover_temp_files
from gbif_dl.testing.mediahost import MediaHosts
from gbif_dl.writers._atomic import is_temp_name
from gbif_dl.writers.classes import load_classes


@pytest.fixture
def hosts() -> Iterator[MediaHosts]:
    with MediaHosts(n_hosts=1) as media:
        yield media


def _requests(media: MediaHosts) -> int:
    return sum(s.requests for s in media.stats().values())


def _url(media: MediaHosts, name: str) -> str:
    return f"{media.base_urls[0]}/media/hostile/{name}.jpg"


def _snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (links not followed) with its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink()
    }


def _rows(root: Path) -> list[dict]:
    table = read_manifest(root)
    assert table is not None
    return table.to_pylist()


def _outside(tmp_path: Path) -> tuple[Path, dict[str, bytes]]:
    """A folder next to the root with a file, a temp-looking file and one with gbif-dl's marker."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.jpg").write_bytes(b"precious")
    (outside / ".a.jpg.0123456789ab.tmp").write_bytes(b"looks like a temp file")
    (outside / ".b.jpg.gbif-dl-0123456789ab.tmp").write_bytes(b"even with the marker")
    return outside, _snapshot(outside)


# --- links ------------------------------------------------------------------------------------


@pytest.mark.parametrize("output", ["imagefolder", "hf"])
@pytest.mark.parametrize("link", ["birds", "train"])
def test_label_or_split_folder_linked_out_of_the_root_is_never_written_through(
    hosts: MediaHosts, tmp_path: Path, output: str, link: str
) -> None:
    """`ln -s ../outside root/birds`, then 2 items labelled `birds` (or a split folder `train`
    that is such a link): nothing under outside/ is written or deleted (the temp sweep included);
    the items fail with reason unsafe_path and a detail naming the link and the fix; once the
    link is removed, a rerun stores them."""
    outside, before = _outside(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("../outside", root / link)
    split = {"subset": "train"} if link == "train" else {}
    items = [{"url": _url(hosts, f"bird{i}"), "label": "birds", **split} for i in range(2)]
    folder = root / ("train/birds" if split else "birds")

    for _ in range(2):  # the rerun meets the same link: the same refusal
        stats = download(items, root=root, output=output, progress=False)
        assert (stats.success, stats.failed, stats.reasons) == (0, 2, {"unsafe_path": 2})
        assert _snapshot(outside) == before
        for row in _rows(root):
            assert row["reason"] == "unsafe_path" and row["path"] is None
            assert "symbolic link" in row["detail"] and "Remove the link" in row["detail"]

    (root / link).unlink()
    stats = download(items, root=root, output=output, progress=False)
    assert (stats.success, stats.failed) == (2, 0)
    assert not folder.is_symlink() and not (root / link).is_symlink()
    assert len(list(folder.glob("*.jpg"))) == 2
    assert _snapshot(outside) == before


def test_a_linked_label_folder_in_a_sharded_job(hosts: MediaHosts, tmp_path: Path) -> None:
    """The same link under `runner="local"` (shards share the folders, the job sweeps temp
    files): nothing outside is written or deleted, the items fail with unsafe_path; once the
    link is removed, a rerun stores them."""
    outside, before = _outside(tmp_path)
    root = tmp_path / "root"
    root.mkdir()
    os.symlink("../outside", root / "birds")
    items = [{"url": _url(hosts, f"shard{i}"), "label": "birds"} for i in range(4)]
    stats = download(items, root=root, runner="local", shard_size=2, progress=False)
    assert (stats.success, stats.failed, stats.reasons) == (0, 4, {"unsafe_path": 4})
    assert _snapshot(outside) == before
    (root / "birds").unlink()
    stats = download(items, root=root, runner="local", shard_size=2, progress=False)
    assert stats.success == 4 and len(list((root / "birds").glob("*.jpg"))) == 4
    assert _snapshot(outside) == before


@pytest.mark.parametrize("name", [JOURNAL_NAME, MANIFEST_NAME, LOCK_NAME])
def test_a_state_file_that_is_a_link_is_refused_and_its_target_untouched(
    hosts: MediaHosts, tmp_path: Path, name: str
) -> None:
    """`root/.gbif-dl-journal.jsonl -> victim.txt` (or the manifest, or the lock), 3 items: the
    run refuses with an OutputError naming the file and saying to remove it; victim.txt keeps its
    bytes; after removing the link a rerun stores the 3 items."""
    victim = tmp_path / "victim.txt"
    victim.write_bytes(b"do not truncate me\n")
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(victim, root / name)
    items = [_url(hosts, f"j{i}") for i in range(3)]

    with pytest.raises(OutputError, match="symbolic link") as caught:
        download(items, root=root, progress=False)
    assert name in str(caught.value) and "Remove" in str(caught.value)
    assert victim.read_bytes() == b"do not truncate me\n"

    (root / name).unlink()
    stats = download(items, root=root, progress=False)
    assert stats.success == 3 and victim.read_bytes() == b"do not truncate me\n"


def test_a_missing_link_target_is_never_created(hosts: MediaHosts, tmp_path: Path) -> None:
    """A lock file that is a dangling link: the run refuses and creates nothing at its target."""
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tmp_path / "created-by-gbif-dl", root / LOCK_NAME)
    with pytest.raises(OutputError, match="symbolic link"):
        download([_url(hosts, "x")], root=root, progress=False)
    assert not (tmp_path / "created-by-gbif-dl").exists()


def test_the_temp_sweep_deletes_only_files_gbif_dl_made(hosts: MediaHosts, tmp_path: Path) -> None:
    """The sweep removes a killed run's temp file (``gbif-dl-`` marker) in a label folder but not a
    user's own `*.tmp`-looking file, and never follows a linked folder."""
    root = tmp_path / "root"
    (root / "bee").mkdir(parents=True)
    ours = root / "bee" / ".x.jpg.gbif-dl-0123456789ab.tmp"
    ours.write_bytes(b"partial")
    theirs = root / "bee" / ".x.jpg.0123456789ab.tmp"
    theirs.write_bytes(b"the user's")
    assert is_temp_name(ours.name) and not is_temp_name(theirs.name)
    download([{"url": _url(hosts, "b"), "label": "bee"}], root=root, progress=False)
    assert not ours.exists() and theirs.read_bytes() == b"the user's"

    outside, before = _outside(tmp_path)
    os.symlink(outside, root / "linked")
    remove_leftover_temp_files(root)  # the sharded job's sweep
    assert _snapshot(outside) == before


# --- state-file names and collisions ----------------------------------------------------------


def _check_dataset(root: Path) -> None:
    """manifest.parquet, classes.json and ATTRIBUTION.csv are files gbif-dl can read back."""
    assert (root / MANIFEST_NAME).is_file() and (root / "ATTRIBUTION.csv").is_file()
    assert (root / "classes.json").is_file()
    load_classes(root)
    rows = _rows(root)
    assert rows and all(r["status"] == "success" for r in rows)
    for row in rows:
        assert hashlib.sha256((root / row["path"]).read_bytes()).hexdigest() == row["sha256"]


def test_labels_and_basenames_equal_to_state_file_names(hosts: MediaHosts, tmp_path: Path) -> None:
    """Labels `manifest.parquet`, `classes.json`, `ATTRIBUTION.csv` and a dict item with
    `basename="classes"` store their images under escaped names; the state files stay files;
    the run and its rerun complete."""
    root = tmp_path / "root"
    items: list[dict] = [
        {"url": _url(hosts, name), "label": name}
        for name in ("manifest.parquet", "classes.json", "ATTRIBUTION.csv")
    ]
    items.append({"url": _url(hosts, "dict"), "label": {"gbifID": 1}, "basename": "classes"})
    items.append({"url": _url(hosts, "plain"), "label": "bee", "basename": "classes"})
    stats = download(items, root=root, progress=False)
    assert (stats.success, stats.failed) == (5, 0)
    _check_dataset(root)
    assert json.loads((root / "classes.json").read_text())["version"] == 1
    assert not (root / "classes.jpg").exists() and not (root / "bee" / "classes.jpg").exists()

    again = download(items, root=root, progress=False)
    assert (again.skipped, again.failed) == (5, 0)
    _check_dataset(root)


def _dwca(path: Path, media: list[str], names: list[str]) -> Path:
    occ = ["gbifID", "scientificName"]
    mm = ["gbifID", "type", "format", "identifier", "license"]
    terms = {
        "gbifID": "http://rs.gbif.org/terms/1.0/gbifID",
        "scientificName": "http://rs.tdwg.org/dwc/terms/scientificName",
        "type": "http://purl.org/dc/terms/type",
        "format": "http://purl.org/dc/terms/format",
        "identifier": "http://purl.org/dc/terms/identifier",
        "license": "http://purl.org/dc/terms/license",
    }
    common = (
        'encoding="UTF-8" fieldsTerminatedBy="\\t" linesTerminatedBy="\\n" ignoreHeaderLines="1"'
    )

    def fields(columns: list[str]) -> str:
        return "".join(f'<field index="{i}" term="{terms[c]}"/>' for i, c in enumerate(columns))

    meta = (
        '<archive xmlns="http://rs.tdwg.org/dwc/text/">'
        f'<core {common} rowType="http://rs.tdwg.org/dwc/terms/Occurrence"><files><location>'
        f'occurrence.txt</location></files><id index="0"/>{fields(occ)}</core>'
        f'<extension {common} rowType="http://rs.gbif.org/terms/1.0/Multimedia"><files>'
        f'<location>multimedia.txt</location></files><coreid index="0"/>{fields(mm)}</extension>'
        "</archive>"
    )
    occurrences = "\t".join(occ) + "\n"
    occurrences += "".join(f"{i + 1}\t{name}\n" for i, name in enumerate(names))
    multimedia = "\t".join(mm) + "\n"
    multimedia += "".join(
        f"{i + 1}\tStillImage\timage/jpeg\t{url}\tCC_BY_4_0\n" for i, url in enumerate(media)
    )
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("meta.xml", meta)
        archive.writestr("occurrence.txt", occurrences)
        archive.writestr("multimedia.txt", multimedia)
    return path


def test_a_dwca_label_equal_to_a_state_file_name(hosts: MediaHosts, tmp_path: Path) -> None:
    """A DwC-A with `scientificName=manifest.parquet` (and `classes.json`, `ATTRIBUTION.csv`),
    `--label scientificName`: the command exits 0, the manifest is a file, a rerun exits 0."""
    names = ["manifest.parquet", "classes.json", "ATTRIBUTION.csv", "Apis mellifera"]
    archive = _dwca(
        tmp_path / "hostile.zip", [_url(hosts, f"dwca{i}") for i in range(len(names))], names
    )
    root = tmp_path / "root"
    argv = ["download", "--dwca", str(archive), "--label", "scientificName", "-o", str(root)]
    assert main(argv) == 0
    _check_dataset(root)
    assert sorted(load_classes(root).labels) == sorted(names)
    hosts.reset_stats()
    assert main(argv) == 0 and _requests(hosts) == 0
    _check_dataset(root)


@pytest.mark.parametrize("name", [MANIFEST_NAME, "classes.json", "ATTRIBUTION.csv"])
def test_a_folder_where_a_state_file_belongs_gets_a_clear_message(
    hosts: MediaHosts, tmp_path: Path, name: str
) -> None:
    """A root where an older gbif-dl made a label folder `manifest.parquet`: the run stops with
    an OutputError naming the folder and the fix (no raw OSError); once moved, a rerun works."""
    root = tmp_path / "root"
    (root / name).mkdir(parents=True)
    (root / name / "a.jpg").write_bytes(b"old image")
    with pytest.raises(OutputError, match="is a folder") as caught:
        download([_url(hosts, "m")], root=root, progress=False)
    assert name in str(caught.value) and "Move the folder" in str(caught.value)
    assert (root / name / "a.jpg").read_bytes() == b"old image"
    (root / name).rename(tmp_path / "moved")
    assert download([_url(hosts, "m")], root=root, progress=False).success == 1


def test_labels_that_collide_keep_their_own_folders(hosts: MediaHosts, tmp_path: Path) -> None:
    """`Apis/mellifera` and `Apis_mellifera-61c4a371`: two folders, two classes, one image each."""
    root = tmp_path / "root"
    labels = ["Apis/mellifera", "Apis_mellifera-61c4a371"]
    items = [{"url": _url(hosts, f"c{i}"), "label": label} for i, label in enumerate(labels)]
    assert download(items, root=root, progress=False).success == 2
    folders = {row["path"].rpartition("/")[0] for row in _rows(root)}
    assert len(folders) == 2
    assert all(len(list((root / f).iterdir())) == 1 for f in folders)
    assert sorted(load_classes(root).labels) == sorted(labels)
    _check_dataset(root)


@pytest.mark.parametrize("output", ["imagefolder", "webdataset"])
def test_two_urls_one_basename_never_share_a_file(
    hosts: MediaHosts, tmp_path: Path, output: str
) -> None:
    """The same `basename` on two items (Python API): two files, two rows, each row's sha256 is
    its own file's; the second name is the basename plus a digest of its URL, in the row; a rerun
    skips both without a request."""
    root = tmp_path / "root"
    items = [{"url": _url(hosts, f"same{i}"), "label": "bee", "basename": "x"} for i in range(2)]
    assert download(items, root=root, output=output, progress=False).success == 2
    rows = _rows(root)
    assert len({row["path"] for row in rows}) == 2
    if output == "imagefolder":
        _check_dataset(root)
        assert sorted(row["basename"] for row in rows)[0] == "x"
        assert all(row["path"].endswith(f"/{row['basename']}.jpg") for row in rows)
    hosts.reset_stats()
    again = download(items, root=root, output=output, progress=False)
    assert again.skipped == 2 and _requests(hosts) == 0


def test_a_basename_taken_in_an_earlier_run_is_not_overwritten(
    hosts: MediaHosts, tmp_path: Path
) -> None:
    """Run 1 stores URL a under basename x; run 2 gets URL b with basename x: b gets its own
    file, a's file and row stay as they were."""
    root = tmp_path / "root"
    first = {"url": _url(hosts, "first"), "label": "bee", "basename": "x"}
    second = {"url": _url(hosts, "second"), "label": "bee", "basename": "x"}
    download([first], root=root, progress=False)
    stored = (root / "bee" / "x.jpg").read_bytes()
    assert download([second], root=root, progress=False).success == 1
    assert (root / "bee" / "x.jpg").read_bytes() == stored
    _check_dataset(root)
    assert len({row["path"] for row in _rows(root)}) == 2


# --- formulas and credentials -----------------------------------------------------------------


def test_formula_cells_are_escaped_in_attribution(hosts: MediaHosts, tmp_path: Path) -> None:
    """`rightsHolder` (and other cells) starting with `=`, `+`, `-`, `@`, tab or CR are written
    with a leading `'` (OWASP), so a spreadsheet shows them as text."""
    hostile = ['=HYPERLINK("http://evil.example","x")', "+1", "-2+3", "@SUM(A1)", "\tx", "\ry"]
    items = [
        {"url": _url(hosts, f"f{i}"), "rightsHolder": text, "creator": text, "publisher": "ok"}
        for i, text in enumerate(hostile)
    ]
    root = tmp_path / "root"
    download(items, root=root, progress=False)
    with open(root / "ATTRIBUTION.csv", newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(row["rightsHolder"] for row in rows) == sorted("'" + text for text in hostile)
    assert all(row["creator"] == row["rightsHolder"] and row["publisher"] == "ok" for row in rows)


@pytest.mark.parametrize("output", ["imagefolder", "hf", "webdataset"])
def test_credentials_in_media_urls_are_never_stored(
    hosts: MediaHosts, tmp_path: Path, output: str
) -> None:
    """`http://user:pass@host/x.jpg` is fetched, but the credentials appear in no file of the
    root (manifest, attribution, metadata, shards); a rerun recognises the records."""
    base = hosts.base_urls[0].replace("http://", "http://gbifuser:s3cr3t-pw@")
    items = [{"url": f"{base}/media/secret/{i}.jpg", "label": "bee"} for i in range(3)]
    root = tmp_path / "root"
    assert download(items, root=root, output=output, progress=False).success == 3
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            assert b"s3cr3t-pw" not in data and b"gbifuser" not in data, path
    assert all("@" not in row["url"] for row in _rows(root))
    hosts.reset_stats()
    again = download(items, root=root, output=output, progress=False)
    assert again.skipped == 3 and _requests(hosts) == 0
