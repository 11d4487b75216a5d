"""A backlog of 100,000 callback tasks: picking the next due batch, and following 10,000 AMI events.

Run: ``.venv/bin/python benchmarks/callback_backlog.py`` (``--database-url
postgresql+psycopg://…`` for PostgreSQL; the default is a fresh SQLite file).

1. **Due batch.** The store holds ``--tasks`` tasks in every state with
   deadlines spread over a week either side of now, in the steady state a
   running sweep leaves (whatever was near its deadline already escalated).
   Timed: the real :func:`~rating_core.complaints.callback_tasks.sweep` (stale-deadline
   check, escalations, the due query on its index), rolled back after each
   round. Baseline: the naive way, loading every open task and choosing in Python.
2. **AMI events.** ``--events`` events as Asterisk writes them (the 14-line
   channel snapshots, ``\\r\\n``), for a PBX where most traffic is other
   people's calls and a few dozen are ours, read in 4 KiB chunks. Timed:
   :class:`~protocols.ami.AmiParser` feeding
   :meth:`~callback.dialer.Dialer.handle_event`. Baseline: the naive reader,
   re-splitting a growing string on every chunk and matching events to calls
   by scanning the list of calls.

Figures are ratios against the baseline measured in the same run (the
machines are shared and noisy): ×N faster means the baseline took N times as long.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from datetime import datetime, timedelta, timezone

from sqlalchemy import Engine, insert, select

from callback.dialer import AmiSettings, Dialer, LiveAttempt
from protocols.ami import NEED_DATA, AmiParser, Message
from rating_core.complaints.callback_tasks import DIALLABLE_STATES, OPEN_STATES, sweep
from rating_core.rules.rulebook import load_rules
from rating_core.store.database import make_engine, make_session_factory
from rating_core.store.migrate import upgrade
from rating_core.store.models import Call, CallbackTask, Rating
from timing import timed

NOW = datetime(2026, 11, 23, 2, 0, tzinfo=timezone.utc)  # Monday 10:00 in Shanghai
STATES = ["pending"] * 60 + ["dialing"] * 5 + ["contacted"] * 10 + ["rectifying"] * 5 + ["rectified"] * 5 + \
    ["exhausted"] * 3 + ["closed"] * 10 + ["not_dialled"] * 2


# -- 1. the due batch ---------------------------------------------------------------


def fill(engine: Engine, count: int, policy_version: str, rng: random.Random) -> None:
    """``count`` 差评 with their tasks, written in bulk (the ORM would take minutes here)."""
    with engine.begin() as conn:
        for start in range(0, count, 10_000):
            ids = range(start + 1, min(start + 10_000, count) + 1)
            calls, ratings, tasks = [], [], []
            for i in ids:
                rated = NOW - timedelta(minutes=rng.randint(0, 7 * 24 * 60))
                verify_by = rated + timedelta(hours=48)
                escalate_at = verify_by - timedelta(hours=8)
                state = rng.choice(STATES)
                calls.append({"id": i, "uniqueid": f"1795000000.{i}", "hotline": "12345", "started_at": rated,
                              "progress": "completed", "menu_plays": 1, "variables": {},
                              "caller_number": f"138{i:08d}"})
                ratings.append({"id": i, "call_id": i, "level": "dissatisfied", "stars": 2, "is_negative": True,
                                "channel": "dtmf", "is_active": True, "reason_tags": [], "is_adopted": True,
                                "rated_at": rated, "updated_at": rated})
                due = state in DIALLABLE_STATES
                tasks.append({
                    "id": i, "rating_id": i, "hotline": "12345", "number": f"138{i:08d}", "mode": "agent_first",
                    "state": state, "created_at": rated, "updated_at": rated, "verify_by": verify_by,
                    "escalate_at": escalate_at, "appeal_file_by": rated + timedelta(days=3),
                    "rectify_by": verify_by + timedelta(days=15) if state == "rectifying" else None,
                    "policy_version": policy_version, "attempts_made": rng.randint(0, 3),
                    "next_attempt_at": NOW + timedelta(minutes=rng.randint(-600, 600)) if due else None,
                    # The steady state: what was near its deadline was escalated by an earlier sweep.
                    "escalated_at": escalate_at if escalate_at <= NOW and state in OPEN_STATES else None,
                })
            conn.execute(insert(Call), calls)
            conn.execute(insert(Rating), ratings)
            conn.execute(insert(CallbackTask), tasks)


def bench_due_batch(engine: Engine, tasks: int, rounds: int) -> tuple[float, float, int]:
    policy = load_rules().callback
    fill(engine, tasks, policy.version, random.Random(2026))
    sessions = make_session_factory(engine)
    picked: list[int] = []

    def ours() -> None:
        with sessions() as session:
            result = sweep(session, policy, NOW)
            picked[:] = [task_id for task_id, _ in result.due]
            session.rollback()

    def naive() -> None:
        with sessions() as session:
            open_tasks = session.scalars(select(CallbackTask).where(CallbackTask.state.in_(OPEN_STATES))).all()
            due = [t for t in open_tasks if t.state in DIALLABLE_STATES and t.next_attempt_at <= NOW]
            due.sort(key=lambda t: (t.verify_by, t.id))
            assert [t.id for t in due[:1000]] == picked, "the baseline must pick the same batch"

    mine = timed(ours, rounds)
    return mine, timed(naive, rounds), len(picked)


# -- 2. the AMI events -------------------------------------------------------------------


def snapshot(name: str, uniqueid: str, linkedid: str, state: int) -> list[tuple[str, str]]:
    desc = {4: "Ring", 5: "Ringing", 6: "Up"}.get(state, "Down")
    return [("Channel", name), ("ChannelState", str(state)), ("ChannelStateDesc", desc),
            ("CallerIDNum", "12345"), ("CallerIDName", "12345"), ("ConnectedLineNum", "<unknown>"),
            ("ConnectedLineName", "<unknown>"), ("Language", "zh"), ("AccountCode", ""),
            ("Context", "callback-out"), ("Exten", "s"), ("Priority", "1"), ("Uniqueid", uniqueid),
            ("Linkedid", linkedid)]


def event_stream(count: int, ours: int, rng: random.Random) -> tuple[bytes, list[LiveAttempt]]:
    """``count`` events; about one in five belongs to one of ``ours`` calls the dialer follows."""
    live = [LiveAttempt(i, i, f"cb-{i}-1-{i:012x}", f"cb-{i}-1-{i:012x}-a", "agent_first", 1e12) for i in range(ours)]
    kinds = ["Newchannel", "Newstate", "NewCallerid", "DialBegin", "DialState", "VarSet", "NewConnectedLine"]
    blocks = []
    for n in range(count):
        mine = rng.random() < 0.2
        if mine:
            call = rng.choice(live)
            uid, linked = rng.choice(call.legs), call.channel_id
            if rng.random() < 0.1:
                blocks.append([("Event", "OriginateResponse"), ("Privilege", "call,all"),
                               ("ActionID", call.action_id), ("Response", "Success"), ("Channel", "Local/x@y-1;1"),
                               ("Context", "callback-bridge"), ("Exten", "s"), ("Reason", "4"), ("Uniqueid", uid),
                               ("CallerIDNum", "12345"), ("CallerIDName", "12345")])
                continue
        else:
            uid = f"1795316{n:06d}.{n}"
            linked = f"1795316{n - n % 4:06d}.{n - n % 4}"
        # No Hangup for ours: it would start the outcome write, which is not what is timed here.
        kind = rng.choice(kinds if mine else [*kinds, "Hangup"])
        extra = [("Cause", "16"), ("Cause-txt", "Normal Clearing")] if kind == "Hangup" else []
        blocks.append([("Event", kind), ("Privilege", "call,all"),
                       *snapshot(f"PJSIP/trunk-{n:08x}", uid, linked, rng.choice((4, 5, 6))), *extra])
    data = b"".join(("".join(f"{k}: {v}\r\n" for k, v in block) + "\r\n").encode() for block in blocks)
    return data, live


def chunks(data: bytes, size: int = 4096) -> list[bytes]:
    return [data[i:i + size] for i in range(0, len(data), size)]


def bench_events(count: int, ours: int, rounds: int) -> tuple[float, float]:
    data, live = event_stream(count, ours, random.Random(7))
    pieces = chunks(data)
    dialer = Dialer(None, load_rules().callback, AmiSettings("127.0.0.1", 5038, "x", "x"))

    def ours_() -> None:
        dialer.tracker.live = {call.channel_id: call for call in live}
        dialer.tracker._by_action = {call.action_id: call.channel_id for call in live}
        for call in live:
            call.answered = False
        parser = AmiParser(expect_banner=False)
        handled = 0
        for piece in pieces:
            parser.receive_data(piece)
            while (message := parser.next_event()) is not NEED_DATA:
                assert isinstance(message, Message)
                dialer.handle_event(message)
                handled += 1
        assert handled == count

    def naive() -> None:
        for call in live:
            call.answered = False
        buffer, handled = "", 0
        for piece in pieces:
            buffer += piece.decode()
            *complete, buffer = buffer.split("\r\n\r\n")
            for block in complete:
                fields = dict(line.split(": ", 1) for line in block.split("\r\n"))
                handled += 1
                for call in live:  # whose call is it?
                    if fields.get("ActionID") == call.action_id or fields.get("Linkedid") == call.channel_id \
                            or fields.get("Uniqueid") in call.legs:
                        if fields["Event"] == "OriginateResponse" and fields.get("Reason") == "4":
                            call.answered = True
                        break
        assert handled == count

    mine = timed(ours_, rounds)
    answered_ours = sum(call.answered for call in live)
    theirs = timed(naive, rounds)
    assert sum(call.answered for call in live) == answered_ours, "both must follow the same calls"
    return mine, theirs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--live-calls", type=int, default=40, help="calls of ours in the event stream")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--database-url", help="default: a fresh SQLite file")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        engine = make_engine(args.database_url or f"sqlite:///{tmp}/backlog.db")
        upgrade(engine)
        with engine.connect() as conn:
            if conn.scalar(select(CallbackTask.id).limit(1)) is not None:
                sys.exit("the database already holds callback tasks; give an empty one")
        print(f"store: {engine.url.render_as_string(hide_password=True)}; {args.tasks:,} tasks")
        mine, naive, picked = bench_due_batch(engine, args.tasks, args.rounds)
        print(f"due batch ({picked} tasks picked): sweep {mine * 1000:.1f} ms, naive {naive * 1000:.1f} ms"
              f" → ×{naive / mine:.1f} faster than the baseline")
        engine.dispose()
    mine, naive = bench_events(args.events, args.live_calls, args.rounds)
    print(f"{args.events:,} AMI events ({args.live_calls} calls of ours among the traffic): "
          f"ours {mine * 1000:.1f} ms ({args.events / mine:,.0f}/s), naive {naive * 1000:.1f} ms"
          f" → ×{naive / mine:.1f} faster than the baseline")


if __name__ == "__main__":
    main()
