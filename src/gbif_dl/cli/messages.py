"""Error messages for a command-line user: Python calls in library messages become commands.

The library's messages name what a Python user types (``gbif_dl.dwca.request(...)``,
``mediatype=``); the command translates them to what a shell user types.

Example:
    >>> cli_message("request it again: gbif_dl.dwca.request(<the same query>)")
    'request it again: `gbif-dl dwca request` with the same query'
"""

from __future__ import annotations

import re

__all__ = ["cli_message"]

_TRANSLATIONS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(pattern), replacement)
    for pattern, replacement in (
        (
            r"gbif_dl\.dwca\.request\(<the same query>\)",
            "`gbif-dl dwca request` with the same query",
        ),
        (r"gbif_dl\.dwca\.request\([^)]*\)", "`gbif-dl dwca request QUERY_FILE`"),
        (
            r"\(GbifClient\.wait_for_download\)",
            "(`gbif-dl dwca status KEY`, or `gbif-dl dwca fetch KEY --wait`)",
        ),
        (r"\bmediatype= ?", "--mediatype "),
        (r"\bnb_samples= ?", "--nb-samples "),
        (r"\bsplit_streams_by= ?", "--split-streams-by "),
        (r"\bfail_threshold= ?", "--fail-threshold "),
    )
)


def cli_message(text: str) -> str:
    """``text`` with the library's Python spellings replaced by the command's.

    Example:
        >>> cli_message("give the media type as mediatype= (default 'StillImage')")
        "give the media type as --mediatype (default 'StillImage')"
    """
    for pattern, replacement in _TRANSLATIONS:
        text = pattern.sub(replacement, text)
    return text
