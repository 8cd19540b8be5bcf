"""Summarise a downloaded dataset: a terminal report and one self-contained HTML page.

The report reads ``ROOT/manifest.parquet`` (one row per record, failures included) and tells
per-class counts per split, the licences, why images failed and which hosts were slow or
unreliable. The HTML page has no external resource at all: the charts are inline SVG and the
sample thumbnails are small JPEGs embedded as ``data:`` URIs, so the file can be mailed, archived
or opened offline.

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> import pyarrow as pa, pyarrow.parquet as pq
    >>> root = Path(tempfile.mkdtemp())
    >>> pq.write_table(pa.table({"url": ["http://h/a.jpg"], "label": ["bee"],
    ...     "status": ["success"], "license": ["CC_BY_4_0"]}), root / "manifest.parquet")
    >>> summary = summarize(root)
    >>> summary.n_success, summary.classes[0].label
    (1, 'bee')
    >>> "bee" in format_text(summary)
    True
"""

from __future__ import annotations

import base64
import html
import io
import logging
import math
import os
import re
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from gbif_dl.errors import OutputError
from gbif_dl.records import normalize_license

__all__ = [
    "DEFAULT_THUMBNAILS",
    "REPORT_NAME",
    "ClassCount",
    "DatasetSummary",
    "HostSummary",
    "format_text",
    "render_html",
    "summarize",
    "write_html",
]

logger = logging.getLogger(__name__)

#: File name of the HTML report, written at the dataset root (a file, never a folder).
REPORT_NAME = "report.html"
#: How many sample thumbnails the HTML page embeds by default.
DEFAULT_THUMBNAILS = 48
#: Longest side of an embedded thumbnail, in pixels.
THUMBNAIL_PX = 120
#: Status values that count as a usable image on disk.
SUCCESS_STATUSES = frozenset({"success", "ok", "downloaded", "done", "exists"})
#: Status values of records that were deliberately not fetched.
SKIPPED_STATUSES = frozenset({"skipped", "skip", "duplicate", "filtered"})
#: Manifest columns that may carry a per-request duration, in seconds or milliseconds.
_DURATION_COLUMNS = (
    ("elapsed_s", 1.0),
    ("duration_s", 1.0),
    ("seconds", 1.0),
    ("elapsed_ms", 1e-3),
)
_NO_SPLIT = "(none)"
_MAX_CHART_CLASSES = 60


@dataclass(frozen=True)
class ClassCount:
    """Images on disk for one class, per split.

    Example:
        >>> ClassCount("bee", {"train": 3, "test": 1}, failed=2).total
        4
    """

    label: str
    per_split: Mapping[str, int]
    failed: int = 0

    @property
    def total(self) -> int:
        """Successful images of this class, over all splits."""
        return sum(self.per_split.values())


@dataclass(frozen=True)
class HostSummary:
    """Requests, failures and (when the manifest records it) mean duration for one host.

    Example:
        >>> HostSummary("img.example.org", requests=10, failed=5).failure_rate
        0.5
    """

    host: str
    requests: int
    failed: int
    mean_seconds: float | None = None
    mean_attempts: float | None = None

    @property
    def failure_rate(self) -> float:
        """Share of this host's requests that failed."""
        return self.failed / self.requests if self.requests else 0.0


@dataclass(frozen=True)
class _Thumb:
    label: str
    license: str
    data_uri: str


@dataclass
class DatasetSummary:
    """Everything the reports show, computed once from the manifest.

    Build it with :func:`summarize`. Example:
        >>> DatasetSummary(root=Path("."), n_rows=0).n_success
        0
    """

    root: Path
    n_rows: int
    n_success: int = 0
    n_failed: int = 0
    n_skipped: int = 0
    total_bytes: int = 0
    splits: dict[str, int] = field(default_factory=dict)
    classes: list[ClassCount] = field(default_factory=list)
    licenses: dict[str, int] = field(default_factory=dict)
    failure_reasons: dict[str, int] = field(default_factory=dict)
    hosts: list[HostSummary] = field(default_factory=list)
    host_timing: bool = False
    thumbnails: list[_Thumb] = field(default_factory=list)
    has_attribution: bool = False
    has_citation: bool = False


# --- reading the manifest ---------------------------------------------------------------------


def _read_manifest(root: Path) -> list[dict[str, Any]]:
    import pyarrow.parquet as pq

    path = root / "manifest.parquet"
    if not path.is_file():
        raise OutputError(
            f"no manifest at {path}; is {root} a gbif-dl dataset? "
            "Run `gbif-dl download` first, or pass the folder that holds manifest.parquet."
        )
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several unrelated types for a bad file
        raise OutputError(
            f"cannot read {path}: {exc}; the file is damaged, re-run the download to rebuild it"
        ) from exc
    return table.to_pylist()


def _text(value: Any, default: str = "") -> str:
    if value is None:
        return default
    if isinstance(value, float) and math.isnan(value):
        return default
    return str(value)


def _status_kind(status: str) -> str:
    status = status.lower()
    if status in SUCCESS_STATUSES:
        return "success"
    if status in SKIPPED_STATUSES:
        return "skipped"
    return "failed"


def _license_name(value: Any) -> str:
    text = _text(value).strip()
    if not text:
        return "unknown"
    return normalize_license(text) or text[:60]


def _host(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(invalid url)"
    return parts.netloc or "(no host)"


def _duration(row: Mapping[str, Any]) -> float | None:
    for column, scale in _DURATION_COLUMNS:
        value = row.get(column)
        if isinstance(value, (int, float)) and not math.isnan(value):
            return float(value) * scale
    return None


def _image_path(root: Path, value: Any) -> Path | None:
    text = _text(value)
    if not text:
        return None
    path = Path(text)
    if not path.is_absolute():
        path = root / path
    try:
        resolved = path.resolve()
        resolved.relative_to(root.resolve())
    except (OSError, ValueError):
        return None  # never read outside the dataset root
    return resolved if resolved.is_file() else None


def summarize(
    root: str | os.PathLike[str], *, thumbnails: int = DEFAULT_THUMBNAILS
) -> DatasetSummary:
    """Read ``root/manifest.parquet`` and compute the report's numbers and thumbnails.

    Args:
        root: the dataset root written by ``gbif-dl download`` / :func:`gbif_dl.io.download`.
        thumbnails: how many sample images to embed (spread over the classes); 0 for none.

    Raises:
        OutputError: when there is no readable manifest at ``root``.

    Example:
        >>> summarize("/nonexistent")  # doctest: +IGNORE_EXCEPTION_DETAIL
        Traceback (most recent call last):
        gbif_dl.errors.OutputError: no manifest at /nonexistent/manifest.parquet
    """
    root_path = Path(root)
    rows = _read_manifest(root_path)
    summary = DatasetSummary(root=root_path, n_rows=len(rows))
    per_class: dict[str, Counter[str]] = defaultdict(Counter)
    failed_per_class: Counter[str] = Counter()
    splits: Counter[str] = Counter()
    licenses: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    host_requests: Counter[str] = Counter()
    host_failed: Counter[str] = Counter()
    host_seconds: dict[str, list[float]] = defaultdict(list)
    host_attempts: dict[str, list[int]] = defaultdict(list)
    for row in rows:
        kind = _status_kind(_text(row.get("status"), "failed"))
        label = _text(row.get("label"), "(no label)")
        subset = _text(row.get("subset"), _NO_SPLIT) or _NO_SPLIT
        if kind == "skipped":
            summary.n_skipped += 1
            continue
        host = _text(row.get("host")) or _host(_text(row.get("url")))
        host_requests[host] += 1
        seconds = _duration(row)
        if seconds is not None:
            host_seconds[host].append(seconds)
        attempts = row.get("attempts")
        if isinstance(attempts, int) and attempts > 0:
            host_attempts[host].append(attempts)
        if kind == "success":
            summary.n_success += 1
            per_class[label][subset] += 1
            splits[subset] += 1
            licenses[_license_name(row.get("license_code") or row.get("license"))] += 1
            size = row.get("bytes")
            if isinstance(size, int):
                summary.total_bytes += size
        else:
            summary.n_failed += 1
            failed_per_class[label] += 1
            host_failed[host] += 1
            reason = _text(row.get("reason"), "unknown") or "unknown"
            status = row.get("http_status")
            if isinstance(status, int) and status > 0:
                reason = f"{reason} (HTTP {status})"
            reasons[reason] += 1
    labels = set(per_class) | set(failed_per_class)
    summary.classes = sorted(
        (ClassCount(lb, dict(per_class[lb]), failed_per_class[lb]) for lb in labels),
        key=lambda c: (-c.total, c.label),
    )
    summary.splits = dict(sorted(splits.items(), key=_split_order))
    summary.licenses = dict(licenses.most_common())
    summary.failure_reasons = dict(reasons.most_common())
    summary.host_timing = bool(host_seconds)
    summary.hosts = [
        HostSummary(
            host,
            requests=n,
            failed=host_failed[host],
            mean_seconds=(sum(host_seconds[host]) / len(host_seconds[host]))
            if host_seconds.get(host)
            else None,
            mean_attempts=(sum(host_attempts[host]) / len(host_attempts[host]))
            if host_attempts.get(host)
            else None,
        )
        for host, n in host_requests.items()
    ]
    summary.hosts.sort(
        key=lambda h: (
            -(h.mean_seconds or 0.0),
            -h.failure_rate,
            -(h.mean_attempts or 0.0),
            -h.requests,
            h.host,
        )
    )
    summary.thumbnails = _make_thumbnails(root_path, rows, thumbnails)
    summary.has_attribution = (root_path / "ATTRIBUTION.csv").is_file()
    summary.has_citation = (root_path / "CITATION.txt").is_file()
    return summary


_SPLIT_RANK = {"train": 0, "val": 1, "valid": 1, "validation": 1, "test": 2, _NO_SPLIT: 9}


def _split_order(item: tuple[str, int]) -> tuple[int, str]:
    return (_SPLIT_RANK.get(item[0], 5), item[0])


def _make_thumbnails(root: Path, rows: Sequence[Mapping[str, Any]], limit: int) -> list[_Thumb]:
    """Round-robin over classes so the grid shows as many classes as possible."""
    if limit <= 0:
        return []
    by_label: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for row in rows:
        if _status_kind(_text(row.get("status"), "failed")) == "success" and row.get("path"):
            by_label[_text(row.get("label"), "(no label)")].append(row)
    queues = [by_label[k] for k in sorted(by_label)]
    thumbs: list[_Thumb] = []
    depth = 0
    while len(thumbs) < limit and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue) and len(thumbs) < limit:
                row = queue[depth]
                uri = _thumbnail(_image_path(root, row.get("path")))
                if uri:
                    thumbs.append(
                        _Thumb(
                            _text(row.get("label"), "(no label)"),
                            _license_name(row.get("license_code") or row.get("license")),
                            uri,
                        )
                    )
        depth += 1
    return thumbs


def _thumbnail(path: Path | None) -> str | None:
    if path is None:
        return None
    from PIL import Image

    try:
        with Image.open(path) as image:
            image.draft("RGB", (THUMBNAIL_PX * 2, THUMBNAIL_PX * 2))  # fast JPEG decode
            image = image.convert("RGB")
            image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
            buffer = io.BytesIO()
            image.save(buffer, format="JPEG", quality=70)
    except (OSError, ValueError, Image.DecompressionBombError) as exc:
        logger.debug("no thumbnail for %s: %s", path, exc)
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


# --- terminal ---------------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Aligned columns: numbers (and percentages) right-aligned, text left-aligned."""
    raw = [list(row) for row in rows]
    cells = [[str(h) for h in headers]] + [[_cell(v) for v in row] for row in raw]
    right = [bool(raw) and all(_is_numberish(row[i]) for row in raw) for i in range(len(headers))]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for n, row in enumerate(cells):
        parts = [
            cell.rjust(widths[i]) if right[i] else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        lines.append("  " + "  ".join(parts).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return lines


def _is_numberish(value: Any) -> bool:
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and (
        value == "-" or re.fullmatch(r"[\d.,]+%?", value) is not None
    )


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _human_bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TB"  # pragma: no cover - loop always returns


def format_text(summary: DatasetSummary, *, max_classes: int = 30, max_hosts: int = 10) -> str:
    """The report as aligned plain-text tables for a terminal.

    Example:
        >>> print(format_text(DatasetSummary(root=Path("data"), n_rows=0)).splitlines()[0])
        Dataset data: 0 images, 0 failed, 0 skipped (0 B)
    """
    s = summary
    out = [
        f"Dataset {s.root}: {s.n_success:,} images, {s.n_failed:,} failed, "
        f"{s.n_skipped:,} skipped ({_human_bytes(s.total_bytes)})"
    ]
    split_names = list(s.splits) or [_NO_SPLIT]
    if s.classes:
        out += ["", f"Classes ({len(s.classes)}):"]
        rows = [
            [c.label, *(c.per_split.get(sp, 0) for sp in split_names), c.total, c.failed]
            for c in s.classes[:max_classes]
        ]
        out += _table(["class", *split_names, "total", "failed"], rows)
        if len(s.classes) > max_classes:
            out.append(f"  ... and {len(s.classes) - max_classes} more classes")
    if s.splits:
        out += ["", "Splits:"]
        out += _table(["split", "images", "share"], _shares(s.splits, s.n_success))
    if s.licenses:
        out += ["", "Licences:"]
        out += _table(["licence", "images", "share"], _shares(s.licenses, s.n_success))
    out += ["", "Failure reasons:"]
    if s.failure_reasons:
        out += _table(["reason", "count", "share"], _shares(s.failure_reasons, s.n_failed))
    else:
        out.append("  none")
    if s.hosts:
        out += ["", f"{_hosts_title(s)}:"]
        out += _table(*_host_table(s, max_hosts))
    return "\n".join(out)


def _hosts_title(s: DatasetSummary) -> str:
    if s.host_timing:
        return "Slowest hosts"
    return "Slowest hosts (by failure rate and attempts per image)"


def _host_table(s: DatasetSummary, limit: int) -> tuple[list[str], list[list[Any]]]:
    headers = ["host", "requests", "failed", "fail rate", "attempts/img"]
    if s.host_timing:
        headers.append("mean s")
    rows: list[list[Any]] = []
    for h in s.hosts[:limit]:
        row: list[Any] = [
            h.host,
            h.requests,
            h.failed,
            f"{100 * h.failure_rate:.1f}%",
            f"{h.mean_attempts:.2f}" if h.mean_attempts is not None else "-",
        ]
        if s.host_timing:
            row.append(f"{h.mean_seconds:.2f}" if h.mean_seconds is not None else "-")
        rows.append(row)
    return headers, rows


def _shares(counts: Mapping[str, int], total: int) -> list[list[Any]]:
    return [[k, v, f"{100 * v / total:.1f}%" if total else "-"] for k, v in counts.items()]


# --- HTML -------------------------------------------------------------------------------------

_SPLIT_COLORS = ["#2b6cb0", "#d69e2e", "#38a169", "#805ad5", "#e53e3e", "#718096"]
_LICENSE_COLORS = [
    "#2f855a", "#3182ce", "#b7791f", "#9f7aea", "#dd6b20", "#319795", "#c53030", "#4a5568",
]  # fmt: skip

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px auto;
max-width:1200px;color:#1a202c;background:#f7fafc;padding:0 16px}
h1{font-size:24px;margin:0 0 4px}h2{font-size:18px;margin:28px 0 8px}
.sub{color:#4a5568;margin:0 0 16px}
.cards{display:flex;gap:12px;flex-wrap:wrap}
.card{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px 16px;min-width:120px}
.card b{display:block;font-size:22px}.card span{color:#4a5568;font-size:13px}
table{border-collapse:collapse;background:#fff;font-size:13px}
td,th{border:1px solid #e2e8f0;padding:4px 10px;text-align:left}
td.n{text-align:right;font-variant-numeric:tabular-nums}
.panel{background:#fff;border:1px solid #e2e8f0;border-radius:8px;padding:12px;overflow-x:auto}
.grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(130px,1fr));gap:8px}
figure{margin:0;background:#fff;border:1px solid #e2e8f0;border-radius:6px;padding:4px;
text-align:center}
figure img{max-width:120px;max-height:120px;display:block;margin:0 auto}
figcaption{font-size:11px;color:#2d3748;overflow:hidden;text-overflow:ellipsis;white-space:nowrap}
.legend span{display:inline-block;margin-right:14px;font-size:13px}
.legend i{display:inline-block;width:12px;height:12px;margin-right:4px;vertical-align:-1px}
.two{display:flex;gap:16px;flex-wrap:wrap}.two>div{flex:1;min-width:300px}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _class_chart(summary: DatasetSummary) -> str:
    """Horizontal stacked bars: one row per class, one colour per split."""
    classes = summary.classes[:_MAX_CHART_CLASSES]
    if not classes:
        return "<p>No images.</p>"
    split_names = list(summary.splits) or [_NO_SPLIT]
    colors = {sp: _SPLIT_COLORS[i % len(_SPLIT_COLORS)] for i, sp in enumerate(split_names)}
    label_w, bar_w, row_h = 260, 640, 22
    biggest = max(c.total for c in classes) or 1
    height = row_h * len(classes) + 10
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" '
        f'height="{height}" role="img" aria-label="images per class">'
    ]
    for i, cls in enumerate(classes):
        y = 5 + i * row_h
        name = cls.label if len(cls.label) <= 36 else cls.label[:35] + "…"
        parts.append(
            f'<text x="{label_w - 6}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{_e(name)}</text>"
        )
        x = float(label_w)
        for sp in split_names:
            n = cls.per_split.get(sp, 0)
            if not n:
                continue
            w = bar_w * n / biggest
            parts.append(
                f'<rect x="{x:.1f}" y="{y + 3}" width="{w:.1f}" height="{row_h - 6}" '
                f'fill="{colors[sp]}"><title>{_e(cls.label)} {_e(sp)}: {n}</title></rect>'
            )
            x += w
        parts.append(f'<text x="{x + 4:.1f}" y="{y + 15}" font-size="12">{cls.total}</text>')
    parts.append("</svg>")
    legend = "".join(
        f'<span><i style="background:{colors[sp]}"></i>{_e(sp)}</span>' for sp in split_names
    )
    more = ""
    if len(summary.classes) > _MAX_CHART_CLASSES:
        more = f"<p>… and {len(summary.classes) - _MAX_CHART_CLASSES} more classes.</p>"
    return f'<div class="legend">{legend}</div>{"".join(parts)}{more}'


def _license_chart(summary: DatasetSummary) -> str:
    """One stacked bar (100 %) plus a legend with counts."""
    total = sum(summary.licenses.values())
    if not total:
        return "<p>No images.</p>"
    width, height = 520, 28
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        'role="img" aria-label="licences">'
    ]
    x = 0.0
    items = list(summary.licenses.items())
    for i, (name, n) in enumerate(items):
        w = width * n / total
        color = _LICENSE_COLORS[i % len(_LICENSE_COLORS)]
        parts.append(
            f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="{height}" fill="{color}">'
            f"<title>{_e(name)}: {n}</title></rect>"
        )
        x += w
    parts.append("</svg>")
    rows = "".join(
        f'<tr><td><i style="display:inline-block;width:12px;height:12px;background:'
        f'{_LICENSE_COLORS[i % len(_LICENSE_COLORS)]}"></i> {_e(name)}</td>'
        f'<td class="n">{n}</td><td class="n">{100 * n / total:.1f}%</td></tr>'
        for i, (name, n) in enumerate(items)
    )
    return (
        f"{''.join(parts)}<table style='margin-top:8px'><tr><th>licence</th><th>images</th>"
        f"<th>share</th></tr>{rows}</table>"
    )


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="n">{_e(_cell(v))}</td>'
            if isinstance(v, (int, float))
            else f"<td>{_e(v)}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def render_html(summary: DatasetSummary, *, title: str | None = None) -> str:
    """The report as one self-contained HTML document (inline CSS, SVG and images).

    Example:
        >>> page = render_html(DatasetSummary(root=Path("data"), n_rows=0))
        >>> page.startswith("<!DOCTYPE html>") and "http://" not in page.replace(
        ...     'xmlns="http://www.w3.org/2000/svg"', "")
        True
    """
    s = summary
    title = title or f"gbif-dl dataset report: {s.root.name or s.root}"
    cards = [
        (f"{s.n_success:,}", "images"),
        (f"{len(s.classes):,}", "classes"),
        (f"{s.n_failed:,}", "failed"),
        (f"{s.n_skipped:,}", "skipped"),
        (_human_bytes(s.total_bytes), "on disk"),
    ]
    cards_html = "".join(
        f"<div class='card'><b>{_e(v)}</b><span>{_e(k)}</span></div>"
        for k, v in [(c[1], c[0]) for c in cards]
    )
    splits_html = _html_table(["split", "images", "share"], _shares(s.splits, s.n_success))
    reasons_html = (
        _html_table(["reason", "count", "share"], _shares(s.failure_reasons, s.n_failed))
        if s.failure_reasons
        else "<p>No failures.</p>"
    )
    thumbs = "".join(
        f'<figure><img src="{t.data_uri}" alt="{_e(t.label)}" loading="lazy">'
        f'<figcaption title="{_e(t.label)} · {_e(t.license)}">{_e(t.label)}<br>{_e(t.license)}'
        "</figcaption></figure>"
        for t in s.thumbnails
    )
    files = ", ".join(
        name
        for name, present in (
            ("ATTRIBUTION.csv", s.has_attribution),
            ("CITATION.txt", s.has_citation),
        )
        if present
    )
    credit = (
        f"<p class='sub'>Licences and rights holders of every image: {_e(files)} "
        "in the dataset root.</p>"
        if files
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(title)}</title><style>{_CSS}</style></head>
<body>
<h1>{_e(title)}</h1>
<p class="sub">{_e(s.n_rows)} records in the manifest of {_e(s.root.name or s.root)}</p>
<div class="cards">{cards_html}</div>
<h2>Images per class</h2><div class="panel">{_class_chart(s)}</div>
<div class="two">
<div><h2>Splits</h2>{splits_html}</div>
<div><h2>Licences</h2><div class="panel">{_license_chart(s)}</div></div>
</div>
<div class="two">
<div><h2>Failure reasons</h2>{reasons_html}</div>
<div><h2>{_hosts_title(s)}</h2>{_html_table(*_host_table(s, 20))}</div>
</div>
<h2>Sample images ({len(s.thumbnails)})</h2>
<div class="grid">{thumbs or "<p>No images to show.</p>"}</div>
{credit}
<p class="sub">Made by gbif-dl. Images remain under their own licences.</p>
</body></html>
"""


def write_html(summary: DatasetSummary, path: str | os.PathLike[str] | None = None) -> Path:
    """Write :func:`render_html` to ``path`` (default ``ROOT/report.html``) atomically.

    Example:
        >>> import tempfile
        >>> out = write_html(DatasetSummary(root=Path(tempfile.mkdtemp()), n_rows=0))
        >>> out.name, out.is_file()
        ('report.html', True)
    """
    target = Path(path) if path is not None else summary.root / REPORT_NAME
    if target.is_dir():
        raise OutputError(f"{target} is a folder; pass a file name such as {target / REPORT_NAME}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    try:
        tmp.write_text(render_html(summary), encoding="utf-8")
        os.replace(tmp, target)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write the report to {target}: {exc}; check the folder") from exc
    return target
