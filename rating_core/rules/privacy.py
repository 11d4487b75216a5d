"""Masking of caller numbers for anyone (and any log) that does not need them in full."""

from __future__ import annotations

from rating_core.rules.number_hash import is_hashed

# What a number replaced by its keyed hash (its retention over) shows: the hash means nothing to a reader.
HASHED_NUMBER_TEXT = "已按保存期限脱敏"


def mask_phone(number: str | None) -> str:
    """``13800000000`` → ``138****0000``; ``88001234`` → ``****1234``; short service numbers stay."""
    if not number:
        return ""
    if is_hashed(number):
        return HASHED_NUMBER_TEXT
    if len(number) >= 11:
        return f"{number[:3]}****{number[-4:]}"
    if len(number) > 5:
        return "*" * (len(number) - 4) + number[-4:]
    return number
