"""Class indices shared by every layout and loader: ``root/classes.json``.

A *class* is a record's label as text (``"Apis mellifera"``, or ``"5352251"`` for a
``speciesKey`` label); records without a label, or whose label is a whole record (a ``dict``),
have no class (index ``-1``). The file lives at the root (a file, never a folder, so ImageFolder
loaders see only class folders) and maps index <-> label, plus the label's GBIF name
(``scientificName``) when known::

    {"version": 1,
     "classes": [{"index": 0, "label": "5352251", "name": "Apis mellifera Linnaeus, 1758"}, ...]}

Indices are stable: labels new to a root are numbered in sorted order after the existing ones,
and an index never changes once written. A run that knows all its labels before it writes
indices (Hugging Face layout: at the end of the run) therefore numbers them in sorted label
order, which is also the order ``torchvision.datasets.ImageFolder`` uses; WebDataset shards bake
the index into each sample, so their new labels are numbered, in sorted order, when the shard
that first holds them is finalized. Reruns and additions only ever append.

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> update_classes(root, ["b", "a"]).labels
    ['a', 'b']
    >>> update_classes(root, ["c", "0"]).labels  # new labels go after the old ones
    ['a', 'b', '0', 'c']
    >>> load_classes(root).index("c")
    3
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gbif_dl.errors import OutputError
from gbif_dl.writers._atomic import atomic_write_bytes

if TYPE_CHECKING:  # pragma: no cover
    import pyarrow as pa

__all__ = [
    "CLASSES_NAME",
    "NO_CLASS",
    "ClassIndex",
    "class_label",
    "load_classes",
    "update_classes",
    "update_classes_from_manifest",
]

logger = logging.getLogger(__name__)

CLASSES_NAME = "classes.json"
NO_CLASS = -1
_FORMAT_VERSION = 1
_MAX_LABEL = 2000  # same bound as manifest cells


def class_label(label: Any) -> str | None:
    """The class of a record label: its text, or None for no label / a ``dict`` label.

    Example:
        >>> class_label("Apis mellifera"), class_label(5352251), class_label(None)
        ('Apis mellifera', '5352251', None)
        >>> class_label({"gbifID": 1}) is None, class_label("") is None
        (True, True)
    """
    if label is None or isinstance(label, (dict, list)):
        return None
    text = label if isinstance(label, str) else str(label)
    if text == "":
        return None
    if text.startswith("{") and text.endswith("}"):  # a dict label stored as JSON text
        try:
            if isinstance(json.loads(text), dict):
                return None
        except ValueError:
            pass
    return text[:_MAX_LABEL]


@dataclass
class ClassIndex:
    """An ordered list of class labels (position = class index) and their GBIF names.

    Example:
        >>> classes = ClassIndex()
        >>> classes.add(["wasp", "bee"], names={"bee": "Apis mellifera"})
        ['bee', 'wasp']
        >>> classes.index("wasp"), classes.get("ant"), classes.names["bee"]
        (1, -1, 'Apis mellifera')
    """

    labels: list[str] = field(default_factory=list)
    names: dict[str, str] = field(default_factory=dict)
    _positions: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._positions = {label: i for i, label in enumerate(self.labels)}

    def __len__(self) -> int:
        return len(self.labels)

    def __contains__(self, label: object) -> bool:
        return label in self._positions

    def index(self, label: str) -> int:
        """The index of ``label``; KeyError when it has none."""
        return self._positions[label]

    def get(self, label: Any, default: int = NO_CLASS) -> int:
        """The index of a record label (as :func:`class_label` reads it), or ``default``."""
        text = class_label(label)
        if text is None:
            return default
        return self._positions.get(text, default)

    def add(self, labels: Iterable[Any], names: Mapping[str, str] | None = None) -> list[str]:
        """Append the labels not known yet, in sorted order; return them. Fills missing names."""
        new = sorted(
            {text for text in map(class_label, labels) if text is not None} - set(self._positions)
        )
        for label in new:
            self._positions[label] = len(self.labels)
            self.labels.append(label)
        for label, name in (names or {}).items():
            if name and label in self._positions and not self.names.get(label):
                self.names[label] = str(name)[:_MAX_LABEL]
        return new

    def to_json(self) -> dict[str, Any]:
        """The content of ``classes.json``."""
        return {
            "version": _FORMAT_VERSION,
            "classes": [
                {"index": i, "label": label, "name": self.names.get(label)}
                for i, label in enumerate(self.labels)
            ],
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str = CLASSES_NAME) -> ClassIndex:
        """Parse the content of ``classes.json``; OutputError when it is malformed."""
        entries = data.get("classes") if isinstance(data, dict) else None
        if not isinstance(entries, list):
            raise OutputError(
                f"{source} is not a gbif-dl class index (no 'classes' list); "
                "delete it to have it rebuilt (class indices of existing shards may change)"
            )
        labels: list[str] = []
        names: dict[str, str] = {}
        for position, entry in enumerate(entries):
            if (
                not isinstance(entry, dict)
                or entry.get("index") != position
                or not isinstance(entry.get("label"), str)
            ):
                raise OutputError(
                    f"{source}: entry {position} must be {{'index': {position}, 'label': ...}}; "
                    "restore the file from a backup or delete it to have it rebuilt"
                )
            labels.append(entry["label"])
            if isinstance(entry.get("name"), str):
                names[entry["label"]] = entry["name"]
        if len(set(labels)) != len(labels):
            raise OutputError(f"{source} lists a label twice; restore it from a backup")
        return cls(labels=labels, names=names)

    def save(self, root: Path | str) -> None:
        """Write ``root/classes.json`` atomically."""
        text = json.dumps(self.to_json(), ensure_ascii=False, indent=1) + "\n"
        atomic_write_bytes(Path(root) / CLASSES_NAME, text.encode("utf-8"))


def load_classes(root: Path | str) -> ClassIndex:
    """The class index of ``root`` (empty when there is no ``classes.json`` yet).

    Example:
        >>> import tempfile
        >>> len(load_classes(tempfile.mkdtemp()))
        0
    """
    path = Path(root) / CLASSES_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return ClassIndex()
    except (OSError, ValueError) as exc:
        raise OutputError(
            f"cannot read {path}: {exc}; delete it to have it rebuilt from the manifest"
        ) from exc
    return ClassIndex.from_json(data, source=str(path))


def update_classes(
    root: Path | str, labels: Iterable[Any], names: Mapping[str, str] | None = None
) -> ClassIndex:
    """Add ``labels`` new to ``root/classes.json`` (sorted, after the old ones); save if changed.

    Example:
        >>> import tempfile
        >>> update_classes(tempfile.mkdtemp(), ["x"], {"x": "Xus"}).names
        {'x': 'Xus'}
    """
    classes = load_classes(root)
    before = (len(classes), dict(classes.names))
    classes.add(labels, names)
    if (len(classes), classes.names) != before or not (Path(root) / CLASSES_NAME).exists():
        classes.save(root)
        logger.debug("classes.json of %s now has %d classes", root, len(classes))
    return classes


def update_classes_from_manifest(
    root: Path | str, manifest: pa.Table | str | os.PathLike[str], *, skip_empty: bool = False
) -> ClassIndex:
    """:func:`update_classes` with the labels of the images ``manifest`` lists as stored.

    ``manifest`` is a table or the path of a manifest parquet file (read a batch at a time: only
    the distinct labels of a batch become Python objects). Only rows with status ``success`` and
    a path count; a label's GBIF name is the first ``scientificName`` seen for it. With
    ``skip_empty``, a root that has no ``classes.json`` and no labelled image gets no file (a URL
    list without labels needs no class index).

    Example:
        >>> import tempfile
        >>> from gbif_dl.manifest import SUCCESS, rows_to_table, manifest_row
        >>> records = [{"url": f"http://h/{x}", "label": x, "scientificName": x.upper()}
        ...            for x in ("b", "a")]
        >>> rows = [manifest_row(r, status=SUCCESS, path=r["label"] + "/1.jpg") for r in records]
        >>> classes = update_classes_from_manifest(tempfile.mkdtemp(), rows_to_table(rows))
        >>> classes.labels, classes.names["a"]
        (['a', 'b'], 'A')
    """
    import pyarrow.compute as pc

    from gbif_dl.manifest import SUCCESS, iter_manifest

    labels: dict[str, None] = {}  # distinct class labels, first seen first
    names: dict[str, str] = {}
    for batch in iter_manifest(manifest, ["status", "path", "label", "scientificName"]):
        done = batch.filter(pc.and_(pc.equal(batch["status"], SUCCESS), pc.is_valid(batch["path"])))
        if done.num_rows == 0:
            continue
        named = pc.and_(
            pc.is_valid(done["scientificName"]), pc.not_equal(done["scientificName"], "")
        )
        firsts = (
            done.select(["label", "scientificName"])
            .filter(pc.fill_null(named, False))
            .group_by("label", use_threads=False)
            .aggregate([("scientificName", "first")])
        )
        first_name = dict(
            zip(
                firsts["label"].to_pylist(), firsts["scientificName_first"].to_pylist(), strict=True
            )
        )
        for label in pc.unique(done["label"]).to_pylist():
            text = class_label(label)
            if text is None:
                continue
            labels.setdefault(text, None)
            name = first_name.get(label)
            if name and text not in names:
                names[text] = name
    if skip_empty and not labels and not (Path(root) / CLASSES_NAME).exists():
        return ClassIndex()
    return update_classes(root, labels, names)
