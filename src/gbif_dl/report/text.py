"""The dataset report as aligned plain-text tables for a terminal.

Labels, licences, failure reasons and host names come from GBIF records and from the hosts that
served the images: untrusted text. Everything :func:`format_text` and :func:`format_table` print
goes through :func:`printable`, so a control character (an escape sequence that would retitle or
recolour the terminal, a bell, a C1 control, a bidirectional override) shows as its escape
(``\\x1b``) instead of acting on the terminal.

Example:
    >>> print("\\n".join(format_table(["class", "images"], [["bee", 1200], ["wasp", 7]])))
      class  images
      -----  ------
      bee     1,200
      wasp        7
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from gbif_dl.progress import format_bytes
from gbif_dl.report.quotas import QUOTA_HEADERS, quota_rows, quota_title
from gbif_dl.report.summary import NO_SPLIT

if TYPE_CHECKING:
    from gbif_dl.report.summary import DatasetSummary

__all__ = [
    "format_cell",
    "format_table",
    "format_text",
    "host_rows",
    "hosts_title",
    "printable",
    "share_rows",
]

#: C0 and C1 controls, DEL, bidirectional controls, line/paragraph separators, lone surrogates.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028-\u202e\u2066-\u2069\ud800-\udfff]"
)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def printable(value: object) -> str:
    """``str(value)`` with every control character written as its escape (``\\x1b``, ``\\u202e``).

    Example:
        >>> printable("\\x1b]0;evil\\x07\\x1b[31mbee")
        '\\\\x1b]0;evil\\\\x07\\\\x1b[31mbee'
        >>> printable("Äpfel 蜂")
        'Äpfel 蜂'
    """
    return _UNPRINTABLE.sub(_escape, str(value))


def format_cell(value: Any) -> str:
    """A table cell: floats with two decimals, integers with thousands separators.

    Example:
        >>> format_cell(1234), format_cell(0.5), format_cell("x")
        ('1,234', '0.50', 'x')
    """
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _is_numberish(value: Any) -> bool:
    if isinstance(value, (int, float)):
        return True
    return isinstance(value, str) and (
        value == "-" or re.fullmatch(r"[\d.,]+%?", value) is not None
    )


def format_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> list[str]:
    """Aligned columns, as lines: a header, a rule, then the rows; numbers (and percentages)
    right-aligned, text left-aligned, control characters escaped (:func:`printable`).

    Example:
        >>> format_table(["stream", "records"], [["a", 3]])
        ['  stream  records', '  ------  -------', '  a             3']
    """
    raw = [list(row) for row in rows]
    cells = [[printable(h) for h in headers]]
    cells += [[printable(format_cell(v)) for v in row] for row in raw]
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


def share_rows(counts: Mapping[str, int], total: int) -> list[list[Any]]:
    """``[name, count, share]`` rows of ``counts`` (share of ``total``, ``-`` when it is 0).

    Example:
        >>> share_rows({"train": 3, "test": 1}, 4)
        [['train', 3, '75.0%'], ['test', 1, '25.0%']]
    """
    return [[k, v, f"{100 * v / total:.1f}%" if total else "-"] for k, v in counts.items()]


def hosts_title(summary: DatasetSummary) -> str:
    """The title of the hosts table: what the hosts are ranked by.

    Example:
        >>> from pathlib import Path
        >>> from gbif_dl.report.summary import DatasetSummary
        >>> hosts_title(DatasetSummary(root=Path("."), n_rows=0, host_timing=True))
        'Slowest hosts'
    """
    if summary.host_timing:
        return "Slowest hosts"
    return "Slowest hosts (by failure rate and attempts per image)"


def host_rows(summary: DatasetSummary, limit: int) -> tuple[list[str], list[list[Any]]]:
    """The headers and the first ``limit`` rows of the hosts table.

    Example:
        >>> from pathlib import Path
        >>> from gbif_dl.report.summary import DatasetSummary, HostSummary
        >>> s = DatasetSummary(root=Path("."), n_rows=2, hosts=[HostSummary("h", 2, 1)])
        >>> host_rows(s, 10)
        (['host', 'requests', 'failed', 'fail rate', 'attempts/img'], [['h', 2, 1, '50.0%', '-']])
    """
    headers = ["host", "requests", "failed", "fail rate", "attempts/img"]
    if summary.host_timing:
        headers.append("mean s")
    rows: list[list[Any]] = []
    for h in summary.hosts[:limit]:
        row: list[Any] = [
            h.host,
            h.requests,
            h.failed,
            f"{100 * h.failure_rate:.1f}%",
            f"{h.mean_attempts:.2f}" if h.mean_attempts is not None else "-",
        ]
        if summary.host_timing:
            row.append(f"{h.mean_seconds:.2f}" if h.mean_seconds is not None else "-")
        rows.append(row)
    return headers, rows


def format_text(summary: DatasetSummary, *, max_classes: int = 30, max_hosts: int = 10) -> str:
    """The report as aligned plain-text tables for a terminal (control characters escaped).

    Example:
        >>> from pathlib import Path
        >>> from gbif_dl.report.summary import DatasetSummary
        >>> print(format_text(DatasetSummary(root=Path("data"), n_rows=0)).splitlines()[0])
        Dataset data: 0 images, 0 failed, 0 skipped (0 B)
    """
    s = summary
    out = [
        f"Dataset {printable(s.root)}: {s.n_success:,} images, {s.n_failed:,} failed, "
        f"{s.n_skipped:,} skipped ({format_bytes(s.total_bytes)})"
    ]
    split_names = list(s.splits) or [NO_SPLIT]
    if s.classes:
        out += ["", f"Classes ({len(s.classes)}):"]
        rows = [
            [c.label, *(c.per_split.get(sp, 0) for sp in split_names), c.total, c.failed]
            for c in s.classes[:max_classes]
        ]
        out += format_table(["class", *split_names, "total", "failed"], rows)
        if len(s.classes) > max_classes:
            out.append(f"  ... and {len(s.classes) - max_classes} more classes")
    if s.streams:
        out += ["", f"{quota_title(s.streams)}:"]
        out += format_table(QUOTA_HEADERS, quota_rows(s.streams))
    if s.splits:
        out += ["", "Splits:"]
        out += format_table(["split", "images", "share"], share_rows(s.splits, s.n_success))
    if s.licenses:
        out += ["", "Licences:"]
        out += format_table(["licence", "images", "share"], share_rows(s.licenses, s.n_success))
    out += ["", "Failure reasons:"]
    if s.failure_reasons:
        reasons = share_rows(s.failure_reasons, s.n_failed)
        out += format_table(["reason", "count", "share"], reasons)
    else:
        out.append("  none")
    if s.duplicate_groups:
        kinds = ", ".join(f"{n:,} {kind}" for kind, n in s.duplicates.items())
        out += ["", f"Duplicates ({kinds}):"]
        rows = [[g.kind, g.kept, g.copies] for g in s.duplicate_groups]
        out += format_table(["kind", "kept file", "copies"], rows)
    if s.hosts:
        out += ["", f"{hosts_title(s)}:"]
        out += format_table(*host_rows(s, max_hosts))
    return "\n".join(out)
