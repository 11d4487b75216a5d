"""A caller's number past its retention: a keyed hash that still matches the number, and nothing else.

HMAC-SHA256 with the deployment's ``HOTLINE_EVAL_NUMBER_KEY``: a plain hash of a number would be undone by
hashing the ten billion mobile numbers there are, a keyed one only with the key. The hash is of the number
exactly as it was stored, because every comparison of numbers (the malicious-rater list, the batch rule) is
of exact strings too. Written as ``hmac:`` and 43 characters of URL-safe base64: 48 in all, within every
64-character number column, and never a number (no column takes it for one to dial or to text).
"""

from __future__ import annotations

import base64
import hashlib
import hmac

NUMBER_HASH_PREFIX = "hmac:"


def hash_number(number: str, key: str) -> str:
    """``number`` as its keyed hash (a hash given again is returned as it is)."""
    if is_hashed(number):
        return number
    digest = hmac.new(key.encode(), number.encode(), hashlib.sha256).digest()
    return NUMBER_HASH_PREFIX + base64.urlsafe_b64encode(digest).decode().rstrip("=")


def is_hashed(number: str | None) -> bool:
    return bool(number) and (number or "").startswith(NUMBER_HASH_PREFIX)


def number_forms(number: str, key: str | None) -> tuple[str, ...]:
    """What a stored row of ``number`` may hold: the number, and once numbers are hashed its hash too."""
    if key is None or is_hashed(number):
        return (number,)
    return (number, hash_number(number, key))
