"""A small asyncio AMI client: one connection, replies matched by ActionID, reconnect with backoff.

Written here rather than wrapping panoramisk 1.4, because two of its
defaults are exactly wrong for a dialer: it re-sends pending actions after a
reconnect (an Originate must never be sent twice), and an Originate without
``Async`` raises inside ``data_received`` and drops the connection. What the
dialer needs is small — send an action, get its response, see every event —
and the wire format lives in :mod:`protocols.ami`, tested apart.

Actions are never retried: if the connection drops before a response
arrives, the waiting caller gets :class:`ConnectionLost` and decides (the
dialer looks the call up by its ChannelId instead of sending it again).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from protocols.ami import (
    NEED_DATA,
    AmiParser,
    Banner,
    ConnectionClosed,
    MalformedMessage,
    Message,
    RemoteProtocolError,
    format_action,
)

log = logging.getLogger(__name__)


class AmiError(Exception):
    """An AMI action could not be completed."""


class NotConnected(AmiError):
    pass


class ConnectionLost(AmiError):
    """The connection dropped with the action unanswered: it may or may not have run."""


class ActionFailed(AmiError):
    def __init__(self, response: Message) -> None:
        self.response = response
        super().__init__(response.get("Message") or "Response: Error")


class LoginFailed(AmiError):
    pass


EventHandler = Callable[[Message], None]


class AmiClient:
    """Keeps one logged-in AMI connection up for as long as :meth:`run` runs."""

    def __init__(
        self, host: str, port: int, username: str, secret: str, *,
        on_event: EventHandler, on_connect: Callable[[], Awaitable[None]] | None = None,
        events: str = "call", action_timeout: float = 10.0, ping_interval: float = 20.0,
        backoff_initial: float = 0.5, backoff_max: float = 30.0, name: str = "hotline-eval",
    ) -> None:
        self.host, self.port, self.username, self.secret = host, port, username, secret
        self.on_event = on_event
        self.on_connect = on_connect
        self.events = events
        self.action_timeout = action_timeout
        self.ping_interval = ping_interval
        self.backoff_initial, self.backoff_max = backoff_initial, backoff_max
        self.connected = asyncio.Event()
        self.banner: str | None = None
        self.connections = 0
        self._ids = (f"{name}-{n}" for n in itertools.count(1))
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[str, asyncio.Future[Message]] = {}
        self._lists: dict[str, _Listing] = {}
        self._stopping = False

    def next_action_id(self) -> str:
        return next(self._ids)

    # -- running ------------------------------------------------------------

    async def run(self) -> None:
        """Connect, log in, read; on any loss wait (backoff with jitter) and do it again."""
        delay = self.backoff_initial
        while not self._stopping:
            try:
                await self._session()
                delay = self.backoff_initial
            except LoginFailed as exc:
                log.error("AMI login to %s:%s refused: %s", self.host, self.port, exc)
                delay = self.backoff_max
            except (OSError, RemoteProtocolError, asyncio.IncompleteReadError, ConnectionLost) as exc:
                if not self._stopping:
                    log.warning("AMI connection to %s:%s lost: %s", self.host, self.port, exc or type(exc).__name__)
            finally:
                self._drop()
            if self._stopping:
                break
            await asyncio.sleep(delay * (0.5 + random.random() / 2))
            delay = min(delay * 2, self.backoff_max)

    async def stop(self) -> None:
        self._stopping = True
        if self._writer is not None:
            try:
                await asyncio.wait_for(self.send("Logoff"), 2)
            except (AmiError, asyncio.TimeoutError):
                pass
        self._drop()

    async def _session(self) -> None:
        reader, writer = await asyncio.wait_for(asyncio.open_connection(self.host, self.port), 10)
        self._writer = writer
        banner_seen: asyncio.Future[Banner] = asyncio.get_running_loop().create_future()
        reading = asyncio.create_task(self._read(reader, banner_seen))
        pinging: asyncio.Task[None] | None = None
        try:
            waiting: set[asyncio.Future[Any]] = {banner_seen, reading}
            await asyncio.wait(waiting, timeout=10, return_when=asyncio.FIRST_COMPLETED)
            if not banner_seen.done():
                raise ConnectionLost("no AMI banner")
            banner = banner_seen.result()
            self.banner = banner.text
            try:
                await self.send("Login", {"Username": self.username, "Secret": self.secret, "Events": self.events})
            except ActionFailed as exc:
                raise LoginFailed(str(exc)) from None
            self.connections += 1
            log.info("AMI connected to %s:%s (%s)", self.host, self.port, self.banner)
            self.connected.set()
            pinging = asyncio.create_task(self._ping())
            if self.on_connect is not None:
                await self.on_connect()
            await reading
        finally:
            for task in (reading, pinging):
                if task is not None and not task.done():
                    task.cancel()

    async def _read(self, reader: asyncio.StreamReader, banner_seen: asyncio.Future[Banner]) -> None:
        try:
            await self._read_messages(reader, banner_seen)
        finally:
            # Whatever ended the reading, nobody may keep waiting for a response.
            self._fail_pending()

    async def _read_messages(self, reader: asyncio.StreamReader, banner_seen: asyncio.Future[Banner]) -> None:
        parser = AmiParser()
        while True:
            parser.receive_data(await reader.read(65536))
            while (item := parser.next_event()) is not NEED_DATA:
                if isinstance(item, ConnectionClosed):
                    raise ConnectionLost("Asterisk closed the AMI connection")
                if isinstance(item, Banner):
                    if not banner_seen.done():
                        banner_seen.set_result(item)
                elif isinstance(item, MalformedMessage):
                    log.warning("AMI: skipping malformed block (%s): %r", item.reason, item.raw[:200])
                elif isinstance(item, Message):
                    self._dispatch(item)

    def _dispatch(self, message: Message) -> None:
        action_id = message.action_id
        if message.is_response:
            future = self._pending.pop(action_id or "", None)
            if future is None:
                log.warning("AMI: response for no pending action (ActionID %r): %s", action_id, message.as_dict())
            elif not future.done():
                future.set_result(message)
            return
        listing = self._lists.get(action_id or "")
        if listing is not None:
            listing.add(message)
        try:
            self.on_event(message)
        except Exception:
            log.exception("AMI event handler failed on %s", message.as_dict())

    def _drop(self) -> None:
        self.connected.clear()
        writer, self._writer = self._writer, None
        if writer is not None:
            writer.close()
        self._fail_pending()

    def _fail_pending(self) -> None:
        pending, self._pending = self._pending, {}
        for action_id, future in pending.items():
            if not future.done():
                future.set_exception(ConnectionLost(f"connection lost before the response to {action_id}"))
        listings, self._lists = self._lists, {}
        for action_id, listing in listings.items():
            if not listing.done.done():
                listing.done.set_exception(ConnectionLost(f"connection lost before the end of the list {action_id}"))

    async def _ping(self) -> None:
        # A half-open TCP connection (Asterisk host gone) is only noticed by talking.
        while True:
            await asyncio.sleep(self.ping_interval)
            try:
                await self.send("Ping")
            except (AmiError, asyncio.TimeoutError):
                log.warning("AMI ping unanswered; reconnecting")
                if self._writer is not None:
                    self._writer.close()
                return

    # -- actions ------------------------------------------------------------

    async def send(self, action: str, fields: Mapping[str, str] | Iterable[tuple[str, str]] = (),
                   *, action_id: str | None = None, timeout: float | None = None) -> Message:
        """Send one action and return its response; :class:`ActionFailed` on ``Response: Error``."""
        writer = self._writer
        if writer is None:
            raise NotConnected("not connected to the AMI")
        action_id = action_id or self.next_action_id()
        future: asyncio.Future[Message] = asyncio.get_running_loop().create_future()
        self._pending[action_id] = future
        try:
            writer.write(format_action(action, action_id, fields))
            await writer.drain()
            response = await asyncio.wait_for(asyncio.shield(future), timeout or self.action_timeout)
        except TimeoutError:
            raise  # no response in time: the caller decides (TimeoutError is an OSError since 3.11)
        except (ConnectionError, OSError) as exc:
            raise ConnectionLost(str(exc)) from exc
        finally:
            self._pending.pop(action_id, None)
        if response.name.lower() == "error":
            raise ActionFailed(response)
        return response

    async def send_list(self, action: str, fields: Mapping[str, str], complete_event: str,
                        *, timeout: float | None = None) -> list[Message]:
        """An action answered by a list of events ending in ``complete_event`` (Status, CoreShowChannels)."""
        action_id = self.next_action_id()
        listing = _Listing(complete_event, asyncio.get_running_loop().create_future())
        self._lists[action_id] = listing
        try:
            await self.send(action, fields, action_id=action_id, timeout=timeout)
            try:
                return await asyncio.wait_for(asyncio.shield(listing.done), timeout or self.action_timeout)
            except asyncio.TimeoutError:
                raise asyncio.TimeoutError(f"{action}: no {complete_event} in time") from None
        finally:
            self._lists.pop(action_id, None)
            if listing.done.done():
                listing.done.exception()  # retrieved, even when send() raised first


class _Listing:
    """The events answering one list action, until its completion event."""

    def __init__(self, complete_event: str, done: asyncio.Future[list[Message]]) -> None:
        self.complete_event = complete_event
        self.items: list[Message] = []
        self.done = done

    def add(self, message: Message) -> None:
        if message.name == self.complete_event:
            if not self.done.done():
                self.done.set_result(self.items)
        else:
            self.items.append(message)
