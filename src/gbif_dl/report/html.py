"""The dataset report as one self-contained HTML page.

The page has no external resource at all: the charts are inline SVG and the sample thumbnails
are small JPEGs embedded as ``data:`` URIs (see :mod:`gbif_dl.report.thumbnails`), so the file
can be mailed, archived or opened offline. Every text from the manifest is HTML-escaped.

Example:
    >>> from pathlib import Path
    >>> from gbif_dl.report.summary import DatasetSummary
    >>> page = render_html(DatasetSummary(root=Path("data"), n_rows=0))
    >>> page.startswith("<!DOCTYPE html>"), "<script" in page
    (True, False)
"""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gbif_dl.errors import OutputError
from gbif_dl.progress import format_bytes
from gbif_dl.report.quotas import QUOTA_HEADERS, quota_rows, quota_title
from gbif_dl.report.summary import NO_SPLIT
from gbif_dl.report.text import format_cell, host_rows, hosts_title, share_rows

if TYPE_CHECKING:
    from gbif_dl.report.summary import DatasetSummary

__all__ = ["REPORT_NAME", "render_html", "write_html"]

#: File name of the HTML report, written at the dataset root (a file, never a folder).
REPORT_NAME = "report.html"
_MAX_CHART_CLASSES = 60

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
    split_names = list(summary.splits) or [NO_SPLIT]
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
            f'<td class="n">{_e(format_cell(v))}</td>'
            if isinstance(v, (int, float))
            else f"<td>{_e(v)}</td>"
            for v in row
        )
        + "</tr>"
        for row in rows
    )
    return f"<table><tr>{head}</tr>{body}</table>"


def _quota_section(summary: DatasetSummary) -> str:
    """Requested vs delivered per stream, spares used, ran dry (quota'd datasets only)."""
    if not summary.streams:
        return ""
    table = _html_table(QUOTA_HEADERS, quota_rows(summary.streams))
    return f"<h2>{_e(quota_title(summary.streams))}</h2>{table}"


def _duplicates_html(summary: DatasetSummary) -> str:
    """Duplicate, near-duplicate and placeholder groups, with a thumbnail of each kept file."""
    if not summary.duplicate_groups:
        return ""
    kinds = ", ".join(f"{n:,} {kind}" for kind, n in summary.duplicates.items())
    rows = [
        [
            f"<img src='{g.thumbnail}' alt='' width='48'>" if g.thumbnail else "",
            _e(g.kind),
            _e(g.kept),
            _e(g.copies),
        ]
        for g in summary.duplicate_groups
    ]
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows)
    return (
        f"<h2>Duplicates ({_e(kinds)})</h2><table><tr><th></th><th>kind</th>"
        f"<th>kept file</th><th>copies</th></tr>{body}</table>"
    )


def render_html(summary: DatasetSummary, *, title: str | None = None) -> str:
    """The report as one self-contained HTML document (inline CSS, SVG and images).

    Example:
        >>> from gbif_dl.report.summary import DatasetSummary
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
        (format_bytes(s.total_bytes), "on disk"),
    ]
    cards_html = "".join(
        f"<div class='card'><b>{_e(v)}</b><span>{_e(k)}</span></div>"
        for k, v in [(c[1], c[0]) for c in cards]
    )
    splits_html = _html_table(["split", "images", "share"], share_rows(s.splits, s.n_success))
    reasons_html = (
        _html_table(["reason", "count", "share"], share_rows(s.failure_reasons, s.n_failed))
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
{_quota_section(s)}
<div class="two">
<div><h2>Splits</h2>{splits_html}</div>
<div><h2>Licences</h2><div class="panel">{_license_chart(s)}</div></div>
</div>
<div class="two">
<div><h2>Failure reasons</h2>{reasons_html}</div>
<div><h2>{hosts_title(s)}</h2>{_html_table(*host_rows(s, 20))}</div>
</div>
{_duplicates_html(s)}
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
        >>> from gbif_dl.report.summary import DatasetSummary
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
