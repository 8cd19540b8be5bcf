"""Small aiohttp response and parameter helpers shared by the GBIF simulator's modules.

Bodies are written the way GBIF writes them: compact JSON (no spaces, UTF-8 unescaped) and
plain text with an explicit (or no) content type; integer query parameters that do not parse
raise :class:`~gbif_dl.testing.search_params.InvalidSearchError` with GBIF's message.
"""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web

from gbif_dl.testing.search_params import InvalidSearchError

__all__ = ["compact_json", "int_param", "json_response", "text_response"]


def text_response(status: int, text: str, content_type: str | None = "text/plain") -> web.Response:
    """A text answer; ``content_type=None`` sends no ``Content-Type`` header of ours."""
    body = text.encode("utf-8")
    if content_type is None:
        return web.Response(status=status, body=body)
    return web.Response(status=status, body=body, content_type=content_type)


def compact_json(payload: Any) -> str:
    """``payload`` as compact JSON text, as GBIF writes it."""
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)


def json_response(payload: Any, status: int = 200) -> web.Response:
    """A compact JSON answer."""
    body = compact_json(payload).encode("utf-8")
    return web.Response(status=status, body=body, content_type="application/json")


def int_param(value: str | None, default: int, name: str) -> int:
    """An integer query parameter (``default`` when absent or empty), or GBIF's 400."""
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise InvalidSearchError(f"Invalid integer value {value} for {name}", param=name) from None
