"""Masking of caller numbers for anyone (and any log) that does not need them in full."""

from __future__ import annotations


def mask_phone(number: str | None) -> str:
    """``13800000000`` → ``138****0000``; ``88001234`` → ``****1234``; short service numbers stay."""
    if not number:
        return ""
    if len(number) >= 11:
        return f"{number[:3]}****{number[-4:]}"
    if len(number) > 5:
        return "*" * (len(number) - 4) + number[-4:]
    return number
