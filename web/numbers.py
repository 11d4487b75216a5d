"""Whole numbers typed in a form or sent in a query string: ASCII digits only, and few enough of them.

``str.isdigit()`` is true of ``²`` and ``٣``, which ``int()`` then refuses or reads as 3, and ``int()`` reads
``10**23`` gladly, which the database then refuses: each a 500 instead of the Chinese 400 the page owes.
"""

from __future__ import annotations

import re

_DIGITS = re.compile(r"[0-9]{1,18}")


def whole(text: str | None, *, most: int) -> int | None:
    """``text`` as a number from 0 to ``most``, or None (not ASCII digits, or out of range)."""
    text = (text or "").strip()
    if not _DIGITS.fullmatch(text):
        return None
    value = int(text)
    return value if value <= most else None
