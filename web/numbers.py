"""Whole numbers typed in a form or sent in a query string: ASCII digits only, and few enough of them.

``str.isdigit()`` is true of ``²`` and ``٣``, which ``int()`` then refuses or reads as 3, and ``int()`` reads
``10**23`` gladly, which the database then refuses: each a 500 instead of the Chinese 400 the page owes.
"""

from __future__ import annotations

import re

from flask import abort

_DIGITS = re.compile(r"[0-9]{1,18}")


def whole(text: str | None, *, most: int) -> int | None:
    """``text`` as a number from 0 to ``most``, or None (not ASCII digits, or out of range)."""
    text = (text or "").strip()
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= most else None


def page_number(text: str | None) -> int:
    """A list's ``page=`` (1 when absent; 0 is read as the first page by the lists), or a 400 in Chinese."""
    page = whole(text if text is not None else "1", most=999_999)
    if page is None:
        abort(400, description=f"页码不正确：{(text or '')[:20]}")
    return page
