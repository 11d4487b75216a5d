"""The Content-Disposition of a file the web tool hands out, named in Chinese.

Browsers read the UTF-8 name from ``filename*`` (RFC 5987 / RFC 6266); the
plain ``filename`` is the ASCII name for clients that do not.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from rating_core.reports.cell_text import file_name

_NOT_ASCII_NAME = re.compile(r"[^A-Za-z0-9._-]")


def attachment(filename: str, ascii_fallback: str) -> str:
    """``attachment; filename="<ascii_fallback>"; filename*=UTF-8''<filename, percent-encoded>``.

    Unsafe characters in either name (path separators, quotes, controls)
    become ``_``, so a 工单号 with a slash cannot name a folder.
    """
    return _disposition("attachment", filename, ascii_fallback)


def inline(filename: str, ascii_fallback: str) -> str:
    """As :func:`attachment`, for a file the browser shows itself (a recording in its player), named if saved."""
    return _disposition("inline", filename, ascii_fallback)


def _disposition(kind: str, filename: str, ascii_fallback: str) -> str:
    name = file_name(filename) or ascii_fallback
    fallback = _NOT_ASCII_NAME.sub("_", ascii_fallback) or "download"
    return f"{kind}; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
