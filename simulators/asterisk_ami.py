"""A simulated Asterisk Manager Interface, for tests and the demo.

It speaks AMI over TCP the way Asterisk 22 does in ``../shared/asterisk``
(OBSERVED.md §2 and AMI_ORIGINATE_FULL.md): the banner, Login (a wrong secret
is refused after one second and the connection closed), Ping, Logoff,
Originate with ``Async: true`` answered by ``Response: Success`` and later an
``OriginateResponse``, channel events with the 14-line snapshot, the five
outcomes with their Reason and Q.850 causes, ``Status`` by channel name or
uniqueid, ``ShowDialPlan``, the login's ``Events:`` filter, and the user's
``write=`` (an action it does not allow is ``Permission denied``). Event
order is shuffled where a real Asterisk's is not stable (the
OriginateResponse drifts), so clients cannot come to depend on one order.

Who answers is decided per citizen number by ``behaviour``: ``answer``,
``busy``, ``noanswer``, ``reject``, ``congest``, ``unallocated``. What an
answered call then runs is ``dialplan``, by context: e.g. ``callback-verify``
handing the channel to the FastAGI server with a scripted citizen on the line
(``hotline_eval.demo_callbacks.fastagi_context``, which joins this simulator to
the IVR's, so that neither package imports the other).

``tests/test_pbx_callbacks.py`` places the same five callbacks on a real
Asterisk 22 and here. What that found wrong here, and fixed: an answered call
whose context's AGI script hangs up (the automated callback) ends with Cause
0 on both legs, not the 16 the dialplan's ``Hangup()`` gives.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from protocols.ami import AmiParser, ConnectionClosed, Message, format_message
from protocols.common import NeedData

log = logging.getLogger(__name__)

STATE_DESC = {0: "Down", 4: "Ring", 5: "Ringing", 6: "Up", 7: "Busy"}
CAUSE_TEXT = {
    0: "Unknown", 1: "Unallocated (unassigned) number", 16: "Normal Clearing", 17: "User busy",
    19: "User alerting, no answer", 21: "Call Rejected", 34: "Circuit/channel congestion",
}
BEHAVIOURS = ("answer", "busy", "noanswer", "reject", "congest", "unallocated")
KNOWN_TECHS = ("Local", "PJSIP", "SIP", "IAX2", "DAHDI")
# The write= classes that allow each action, any one of them (the authority its ast_manager_register call gives,
# manager.c and pbx.c); an action not named here needs none.
AUTHORITY = {"originate": {"originate"}, "status": {"system", "call", "reporting"},
             "showdialplan": {"config", "reporting"}}


@dataclass
class SimChannel:
    name: str
    uniqueid: str
    linkedid: str
    context: str
    exten: str
    state: int = 0
    priority: int = 1
    cid_num: str = "<unknown>"
    cid_name: str = "<unknown>"
    created: float = field(default_factory=time.monotonic)

    def snapshot(self, prefix: str = "") -> list[tuple[str, str]]:
        return [
            (f"{prefix}Channel", self.name), (f"{prefix}ChannelState", str(self.state)),
            (f"{prefix}ChannelStateDesc", STATE_DESC.get(self.state, "Unknown")),
            (f"{prefix}CallerIDNum", self.cid_num), (f"{prefix}CallerIDName", self.cid_name),
            (f"{prefix}ConnectedLineNum", self.cid_num), (f"{prefix}ConnectedLineName", self.cid_name),
            (f"{prefix}Language", "en"), (f"{prefix}AccountCode", ""),
            (f"{prefix}Context", self.context), (f"{prefix}Exten", self.exten),
            (f"{prefix}Priority", str(self.priority)),
            (f"{prefix}Uniqueid", self.uniqueid), (f"{prefix}Linkedid", self.linkedid),
        ]


class _Connection:
    def __init__(self, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        self.logged_in = False
        self.events_mask: set[str] | None = None  # None: all the user may read

    def wants(self, privilege: str) -> bool:
        if not self.logged_in:
            return False
        if self.events_mask is None:
            return True
        categories = {p.strip().lower() for p in privilege.split(",")} - {"all"}
        return bool(categories & self.events_mask)

    def send(self, fields: list[tuple[str, str]]) -> None:
        if not self.writer.is_closing():
            self.writer.write(format_message(fields))


# What an answered leg runs in a dialplan context, given the channel and the Originate's variables.
ContextScript = Callable[["SimChannel", dict[str, str]], Awaitable[None]]


class SimulatedAsterisk:
    """An AMI server on ``host:port`` that places simulated callbacks."""

    def __init__(
        self, *, username: str = "hotline-eval", secret: str = "hotline-eval",
        behaviour: Callable[[str], str] | None = None, talk_seconds: float = 0.3,
        ring_seconds: float | None = None, seed: int | None = None, dialplan: dict[str, ContextScript] | None = None,
        contexts: tuple[str, ...] = (), write: str = "all",
    ) -> None:
        self.username, self.secret = username, secret
        # The user's write= in manager.conf: a comma-separated list of classes, or "all".
        self.write = {p.strip().lower() for p in write.split(",")}
        self.dialplan = dialplan or {}
        # Contexts ShowDialPlan finds besides the scripted ones (whose answered legs simply hang up).
        self.contexts = contexts
        self.behaviour = behaviour or (lambda number: "answer")
        self.talk_seconds = talk_seconds
        # None: ring for the Originate's own Timeout, as Asterisk does.
        self.ring_seconds = ring_seconds
        self.random = random.Random(seed)
        self.channels: dict[str, SimChannel] = {}
        self.originates: list[Message] = []
        self._connections: set[_Connection] = set()
        self._server: asyncio.base_events.Server | None = None
        self._calls: set[asyncio.Task[None]] = set()
        self._seq = itertools.count(0x23)
        self._ids = itertools.count(70)
        self._epoch = int(time.time())
        self.port = 0
        self.host = "127.0.0.1"
        # When set, Originates are accepted but their calls do nothing until released.
        self.hold_calls = asyncio.Event()
        self.hold_calls.set()
        # When True, the next Originate is read and the connection cut before any response, the call not
        # placed: a network failure just after the client wrote it. Cleared by that Originate.
        self.cut_at_next_originate = False

    # -- server -------------------------------------------------------------

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self._server = await asyncio.start_server(self._serve, host, port)
        self.host, self.port = self._server.sockets[0].getsockname()[:2]

    async def stop(self, *, hang_up_calls: bool = True) -> None:
        if self._server is not None:
            self._server.close()
            self.drop_connections()
            await self._server.wait_closed()
            self._server = None
        if hang_up_calls:
            for task in list(self._calls):
                task.cancel()
            await asyncio.gather(*self._calls, return_exceptions=True)
            self.channels.clear()

    def drop_connections(self) -> None:
        """Close every manager connection (as a restart or a network cut does); calls go on."""
        for connection in list(self._connections):
            connection.writer.close()
        self._connections.clear()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connection = _Connection(writer)
        self._connections.add(connection)
        writer.write(b"Asterisk Call Manager/11.0.0\r\n")
        parser = AmiParser(expect_banner=False)
        try:
            while not writer.is_closing():
                parser.receive_data(await reader.read(65536))
                while not isinstance(item := parser.next_event(), NeedData):
                    if isinstance(item, ConnectionClosed):
                        return
                    if not isinstance(item, Message):
                        continue  # Asterisk ignores lines it cannot split (and a client sends no banner)
                    if not await self._handle(connection, item):
                        writer.close()
                        break
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            self._connections.discard(connection)
            writer.close()

    # -- actions ------------------------------------------------------------

    async def _handle(self, conn: _Connection, action: Message) -> bool:
        name = (action.get("Action") or "").lower()
        aid = action.get("ActionID")
        head = [("ActionID", aid)] if aid is not None else []
        if not name:
            conn.send([("Response", "Error"), *head, ("Message", "Missing action in request")])
            return True
        if name == "login":
            if action.get("Username") == self.username and action.get("Secret") == self.secret:
                conn.logged_in = True
                mask = (action.get("Events") or "on").lower()
                if mask in ("on", "yes", "true", "all"):
                    conn.events_mask = None
                elif mask in ("off", "no", "false"):
                    conn.events_mask = set()
                else:
                    conn.events_mask = {p.strip() for p in mask.split(",")}
                conn.send([("Response", "Success"), *head, ("Message", "Authentication accepted")])
                self._emit([("Event", "FullyBooted"), ("Privilege", "system,all"), ("Uptime", "483"),
                            ("LastReload", "483"), ("Status", "Fully Booted")], only=conn)
                return True
            await asyncio.sleep(1.0)  # manager.c sleeps before refusing
            conn.send([("Response", "Error"), *head, ("Message", "Authentication failed")])
            return False
        if not conn.logged_in:
            conn.send([("Response", "Error"), *head, ("Message", "Permission denied")])
            return True
        allowed = AUTHORITY.get(name)
        if allowed is not None and "all" not in self.write and not allowed & self.write:
            conn.send([("Response", "Error"), *head, ("Message", "Permission denied")])
            return True
        if name == "ping":
            conn.send([("Response", "Success"), *head, ("Ping", "Pong"), ("Timestamp", f"{time.time():.6f}")])
        elif name == "logoff":
            conn.send([("Response", "Goodbye"), *head, ("Message", "Thanks for all the fish.")])
            return False
        elif name == "originate":
            if self.cut_at_next_originate:
                self.cut_at_next_originate = False
                return False
            self._originate(conn, action, head)
        elif name == "status":
            self._status(conn, action, head)
        elif name == "showdialplan":
            self._show_dialplan(conn, action, head)
        else:
            conn.send([("Response", "Error"), *head, ("Message", f"Invalid/unknown command: {action.get('Action')}. "
                                                               "Use Action: ListCommands to show available commands.")])
        return True

    def _show_dialplan(self, conn: _Connection, action: Message, head: list[tuple[str, str]]) -> None:
        """As pbx.c's manager_show_dialplan answers: the contexts asked for (``Context:``, else all), each a
        simulated ``s,1,NoOp(simulated)``, as ``ListDialplan`` events between a listack and
        ``ShowDialPlanComplete`` with its counts; a context that is not there (or an extension, matched here
        literally) is an error with no list. These events are written to the asker alone, with no Privilege or
        Timestamp and whatever its ``Events:`` filter (astman_append, not manager_event)."""
        wanted, exten = action.get("Context") or "", action.get("Extension") or ""
        known = list(dict.fromkeys([*self.dialplan, *self.contexts]))
        contexts = [c for c in known if c == wanted] if wanted else known
        if wanted and not contexts:
            conn.send([("Response", "Error"), *head, ("Message", f"Did not find context {wanted}")])
            return
        if exten and exten != "s":
            where = f"{exten}@{wanted}" if wanted else f"{exten} in any context"
            conn.send([("Response", "Error"), *head, ("Message", f"Did not find extension {where}")])
            return
        conn.send([("Response", "Success"), *head, ("EventList", "start"), ("Message", "DialPlan list will follow")])
        for context in contexts:
            conn.send([("Event", "ListDialplan"), *head, ("Context", context), ("Extension", "s"), ("Priority", "1"),
                       ("Application", "NoOp"), ("AppData", "simulated"), ("Registrar", "pbx_config")])
        count = str(len(contexts))
        conn.send([("Event", "ShowDialPlanComplete"), *head, ("EventList", "Complete"), ("ListItems", count),
                   ("ListExtensions", count), ("ListPriorities", count), ("ListContexts", count)])

    def _originate(self, conn: _Connection, action: Message, head: list[tuple[str, str]]) -> None:
        channel = action.get("Channel")
        if not channel:
            conn.send([("Response", "Error"), *head, ("Message", "Channel not specified")])
            return
        if action.get("Context") and not action.get("Exten") and not action.get("Application"):
            conn.send([("Response", "Error"), *head, ("Message", "Extension does not exist.")])
            return
        timeout = action.get("Timeout") or "30000"
        if not timeout.isdigit():
            conn.send([("Response", "Error"), *head, ("Message", "Invalid timeout")])
            return
        for wanted in ("ChannelId", "OtherChannelId"):
            value = action.get(wanted)
            if value and (value in self.channels or any(c.uniqueid == value for c in self.channels.values())):
                conn.send([("Response", "Error"), *head, ("Message", "Uniqueid already in use.")])
                return
        self.originates.append(action)
        conn.send([("Response", "Success"), *head, ("Message", "Originate successfully queued")])
        task = asyncio.create_task(self._place(action, int(timeout) / 1000))
        self._calls.add(task)
        task.add_done_callback(self._calls.discard)

    def _status(self, conn: _Connection, action: Message, head: list[tuple[str, str]]) -> None:
        wanted = action.get("Channel")
        found = [c for c in self.channels.values() if wanted in (None, "", c.name, c.uniqueid)]
        if wanted and not found:
            conn.send([("Response", "Error"), *head, ("Message", "No such channel")])
            return
        conn.send([("Response", "Success"), *head, ("EventList", "start"),
                   ("Message", "Channel status will follow")])
        for chan in found:
            conn.send([("Event", "Status"), ("Privilege", "Call"), *head, *chan.snapshot(),
                       ("Type", chan.name.split("/", 1)[0]), ("DNID", ""),
                       ("Seconds", str(int(time.monotonic() - chan.created)))])
        conn.send([("Event", "StatusComplete"), *head, ("EventList", "Complete"),
                   ("ListItems", str(len(found))), ("Items", str(len(found)))])

    # -- calls --------------------------------------------------------------

    def _emit(self, fields: list[tuple[str, str]], only: _Connection | None = None) -> None:
        event, privilege = fields[0], fields[1]
        if privilege[1] != "system,all":
            fields = [event, privilege, ("Timestamp", f"{time.time():.6f}"), *fields[2:]]
        for conn in ([only] if only else list(self._connections)):
            if conn.wants(privilege[1]):
                conn.send(fields)

    def _chan_event(self, name: str, chan: SimChannel, *extra: tuple[str, str]) -> None:
        self._emit([("Event", name), ("Privilege", "call,all"), *chan.snapshot(), *extra])

    def _new_uniqueid(self) -> str:
        return f"{self._epoch}.{next(self._ids)}"

    async def _place(self, action: Message, ring_timeout: float) -> None:
        await self.hold_calls.wait()
        dial = action["Channel"]
        variables = dict(v.split("=", 1) for v in action.get_all("Variable") if "=" in v)
        cid_num = re.sub(r'^.*<([^>]*)>.*$', r"\1", action.get("CallerID") or "") or "<unknown>"
        tech, _, resource = dial.partition("/")
        response_head = [("Event", "OriginateResponse"), ("Privilege", "call,all")]
        aid = [("ActionID", action["ActionID"])] if action.get("ActionID") else []
        orig_tail = [("Context", action.get("Context") or ""), ("Exten", action.get("Exten") or "")]
        if tech not in KNOWN_TECHS or not resource:
            self._emit([*response_head, *aid, ("Response", "Failure"), ("Channel", dial), *orig_tail,
                        ("Reason", "0"), ("Uniqueid", "<unknown>"), ("CallerIDNum", "<unknown>"),
                        ("CallerIDName", "<unknown>")])
            return
        number = variables.get("CALLBACK_NUMBER") if action.get("Context") == "callback-bridge" else None
        dialled = re.sub(r"\D", "", resource.split("@", 1)[0]) or resource
        agent_first = number is not None
        outcome = "answer" if agent_first else self.behaviour(dialled)
        seq = next(self._seq)
        local_ctx = resource.split("@", 1)[1] if "@" in resource else "default"
        one_id = action.get("ChannelId") or self._new_uniqueid()
        two_id = action.get("OtherChannelId") or self._new_uniqueid()
        one = SimChannel(f"{dial}-{seq:08x};1", one_id, one_id, local_ctx, dialled)
        two = SimChannel(f"{dial}-{seq:08x};2", two_id, one_id, local_ctx, dialled, state=4)
        self.channels[one.name] = one
        self.channels[two.name] = two
        try:
            await self._play(action, one, two, outcome, cid_num, ring_timeout, response_head + aid, orig_tail,
                             dial, number, variables)
        finally:
            self.channels.pop(one.name, None)
            self.channels.pop(two.name, None)

    async def _play(self, action: Message, one: SimChannel, two: SimChannel, outcome: str, cid: str,
                    ring_timeout: float, response_head: list[tuple[str, str]], orig_tail: list[tuple[str, str]],
                    dial: str, citizen: str | None, variables: dict[str, str]) -> None:
        def failure(reason: int) -> list[tuple[str, str]]:
            return [*response_head, ("Response", "Failure"), ("Channel", dial), *orig_tail, ("Reason", str(reason)),
                    ("Uniqueid", "<unknown>"), ("CallerIDNum", cid), ("CallerIDName", cid)]

        def dial_event(status: str, event: str = "DialEnd") -> None:
            self._emit([("Event", event), ("Privilege", "call,all"), *one.snapshot("Dest"), ("DialStatus", status)])

        def hangup(chan: SimChannel, cause: int) -> None:
            self._chan_event("Hangup", chan, ("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown")))
            self.channels.pop(chan.name, None)

        self._chan_event("Newchannel", one)
        self._chan_event("Newchannel", two)
        for chan in (one, two):
            chan.cid_num = chan.cid_name = cid
            self._chan_event("NewCallerid", chan, ("CID-CallingPres", "0 (Presentation Allowed, Not Screened)"))
        self._emit([("Event", "DialBegin"), ("Privilege", "call,all"), *one.snapshot("Dest"),
                    ("DialString", dial.partition("/")[2])])
        await asyncio.sleep(0.01)
        if outcome == "answer":
            answered = [*response_head, ("Response", "Success"), ("Channel", one.name), *orig_tail, ("Reason", "4"),
                        ("Uniqueid", one.uniqueid), ("CallerIDNum", cid), ("CallerIDName", cid)]
            two.state = one.state = 6
            events: list[Callable[[], None]] = [
                lambda: self._chan_event("Newstate", two),
                lambda: self._chan_event("Newstate", one),
                lambda: dial_event("ANSWER"),
            ]
            # OriginateResponse comes from another thread in Asterisk: anywhere among these.
            events.insert(self.random.randint(0, len(events)), lambda: self._emit(answered))
            for emit in events:
                emit()
            one.context, one.exten = action.get("Context") or one.context, action.get("Exten") or one.exten
            script = self.dialplan.get(one.context)
            if script is not None and citizen is None:
                # The context's AGI script hangs the call up itself (AGI HANGUP): Asterisk then gives no cause on
                # either leg, where the dialplan's Hangup() gives 16 (tests/test_pbx_callbacks.py).
                await script(one, variables)
                self._chan_event("SoftHangupRequest", one, ("Cause", "32"))
                self._chan_event("HangupRequest", two, ("Cause", "0"))
                hangup(one, 0)
                hangup(two, 0)
                return
            if citizen is not None:
                await self._bridge_to_citizen(one, citizen, cid)
            else:
                await asyncio.sleep(self.talk_seconds)
            self._chan_event("SoftHangupRequest", one, ("Cause", "16"))
            self._chan_event("HangupRequest", two, ("Cause", "16"))
            hangup(one, 16)
            hangup(two, 16)
            return
        if outcome == "noanswer":
            one.state = 5
            self._chan_event("Newstate", one)
            dial_event("RINGING", "DialState")
            await asyncio.sleep(self.ring_seconds if self.ring_seconds is not None else ring_timeout)
            reason = 3
            tail = [lambda: self._chan_event("HangupRequest", two, ("Cause", "19")),
                    lambda: hangup(one, 19), lambda: hangup(two, 19)]
        elif outcome == "busy":
            two.state = 7
            self._chan_event("Newstate", two)
            reason = 5
            tail = [lambda: dial_event("BUSY"),
                    lambda: hangup(one, 0), lambda: hangup(two, 17)]
        elif outcome == "congest":
            two.state = 7
            self._chan_event("Newstate", two)
            reason = 8
            tail = [lambda: dial_event("CONGESTION"),
                    lambda: hangup(two, 34), lambda: hangup(one, 0)]
        else:  # reject, unallocated: the callee hangs up with a cause, Reason 0
            reason, cause = 0, 1 if outcome == "unallocated" else 21
            tail = [lambda: self._chan_event("HangupRequest", one, ("Cause", str(cause))),
                    lambda: dial_event("NOANSWER"),
                    lambda: hangup(two, cause), lambda: hangup(one, cause)]
        # As with an answered call, the OriginateResponse may come anywhere among the rest.
        tail.insert(self.random.randint(0, len(tail)), lambda: self._emit(failure(reason)))
        for emit in tail:
            emit()

    async def _bridge_to_citizen(self, agent: SimChannel, number: str, cid: str) -> None:
        """Agent-first: the answered agent leg runs Dial() to the citizen."""
        outcome = self.behaviour(number)
        uid = self._new_uniqueid()
        citizen = SimChannel(f"PJSIP/hotline-trunk-{next(self._seq):08x}", uid, agent.linkedid,
                             "from-trunk", number, state=0, cid_num=cid, cid_name=cid)
        self.channels[citizen.name] = citizen
        self._chan_event("Newchannel", citizen)
        self._emit([("Event", "DialBegin"), ("Privilege", "call,all"), *agent.snapshot(), *citizen.snapshot("Dest"),
                    ("DialString", f"{number}@hotline-trunk")])
        statuses = {"answer": ("ANSWER", 16), "busy": ("BUSY", 17), "noanswer": ("NOANSWER", 19),
                    "reject": ("NOANSWER", 21), "congest": ("CONGESTION", 34), "unallocated": ("CHANUNAVAIL", 1)}
        status, cause = statuses.get(outcome, ("CHANUNAVAIL", 0))
        if outcome == "noanswer":
            await asyncio.sleep(self.ring_seconds or 0.05)
        if status == "ANSWER":
            citizen.state = 6
            self._chan_event("Newstate", citizen)
        self._emit([("Event", "DialEnd"), ("Privilege", "call,all"), *agent.snapshot(), *citizen.snapshot("Dest"),
                    ("DialStatus", status)])
        if status == "ANSWER":
            await asyncio.sleep(self.talk_seconds)
        self._chan_event("Hangup", citizen, ("Cause", str(cause)), ("Cause-txt", CAUSE_TEXT.get(cause, "Unknown")))
        self.channels.pop(citizen.name, None)
