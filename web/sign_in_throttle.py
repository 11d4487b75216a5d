"""Throttling sign-in: after too many wrong passwords for one account, or from one address, within a window,
every further attempt for that account or from that address is refused for a while, the right password
included.

Counted with ``limits`` (the library Flask-Limiter is built on) in Redis, so that every process of the web
tool shares the counts. Flask-Limiter's decorators would count each request before the view runs; here only
a failure counts, a success clears the account's count, and the view audits a lock once, when it begins.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from typing import Literal

from limits import RateLimitItem, parse
from limits.errors import StorageError
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter

log = logging.getLogger(__name__)

# 5 wrong passwords for one account, or 30 from one address, within 15 minutes.
PER_ACCOUNT = "5 per 15 minutes"
PER_ADDRESS = "30 per 15 minutes"
KEY_PREFIX = "hotline-eval-sign-in"

Scope = Literal["account", "address"]


@dataclass(frozen=True)
class Lock:
    """Attempts for an account or from an address refused for ``minutes`` more (rounded up)."""

    scope: Scope
    minutes: int

    @property
    def message(self) -> str:
        who = "该账号" if self.scope == "account" else "本机地址"
        return f"{who}登录失败次数过多，已暂时锁定，请于 {self.minutes} 分钟后再试"


class SignInThrottle:
    """Failed sign-ins per account and per address, in a moving window."""

    def __init__(self, storage_uri: str, *, per_account: str = PER_ACCOUNT, per_address: str = PER_ADDRESS,
                 key_prefix: str = KEY_PREFIX) -> None:
        options: dict[str, float | str] = {}
        if not storage_uri.startswith("memory"):
            # A Redis that does not answer must not hold a sign-in for long (see _fail_open).
            options = {"key_prefix": key_prefix, "socket_connect_timeout": 1.0, "socket_timeout": 1.0}
        if storage_uri.startswith("unix://"):  # REDIS_URL as redis-py spells a socket; limits spells it so
            storage_uri = "redis+" + storage_uri
        storage = storage_from_string(storage_uri, wrap_exceptions=True, **options)
        self._limiter = MovingWindowRateLimiter(storage)
        self._limits: dict[Scope, RateLimitItem] = {"account": parse(per_account), "address": parse(per_address)}

    def lock(self, username: str, address: str) -> Lock | None:
        """The lock in force on the account or the address, if any."""
        try:
            for scope, key in self._keys(username, address):
                if not self._limiter.test(self._limits[scope], scope, key):
                    return Lock(scope, self._minutes_left(scope, key))
        except StorageError as exc:
            self._fail_open(exc)
        return None

    def failed(self, username: str, address: str) -> Lock | None:
        """Count a wrong password against the account and the address; the lock this failure starts, if any."""
        try:
            for scope, key in self._keys(username, address):
                self._limiter.hit(self._limits[scope], scope, key)
        except StorageError as exc:
            self._fail_open(exc)
            return None
        return self.lock(username, address)

    def succeeded(self, username: str) -> None:
        """The right password: the account's earlier failures no longer count (the address's still do)."""
        try:
            self._limiter.clear(self._limits["account"], "account", username)
        except StorageError as exc:
            self._fail_open(exc)

    @staticmethod
    def _keys(username: str, address: str) -> tuple[tuple[Scope, str], ...]:
        return ("account", username), ("address", address)

    def _minutes_left(self, scope: Scope, key: str) -> int:
        reset = self._limiter.get_window_stats(self._limits[scope], scope, key).reset_time
        return max(1, math.ceil((reset - time.time()) / 60))

    @staticmethod
    def _fail_open(exc: StorageError) -> None:
        # Fail open: with Redis down the callback queue stops anyway (RQ runs on it), and locking every agent
        # and supervisor out of the tool on top would stop the 差评 callbacks the law gives deadlines for.
        # Passwords are still checked (scrypt, slow by design); the outage is logged as an error for operators.
        log.error("sign-in throttling unavailable, attempts are not being counted: %s", exc.storage_error)
