"""CPU per call for the store to write the IVR's events: batches as the FastAGI server's writer sends them,
against one event per transaction.

Run: ``.venv/bin/python benchmarks/store_batches.py [--calls 3000] [--batches 3,10,100]``

The events are those of real calls, in the order they happen: callers arrive at
300 a second, each call starts, is rated about 8 s later (20% give a 差评 with a
reason and a voice message, 20% hang up unrated) and ends about 15 s after it
began, so a batch holds events of many calls, and a call's events reach the
store in different batches. Each way of writing gets a fresh SQLite store, in
the same run:

- baseline: one transaction per event (a writer without group commit);
- ours: ``RatingStore.apply_journaled`` (what the server's store process does) on batches of each ``--batches`` size
  (the server's writer sends what gathered in ``GROUP_COMMIT_LINGER``, or while
  the last batch was written: a few events at light load, hundreds at peak).

Figures are CPU seconds of this process per call, and ratios to the baseline.
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone

from rating_core.events.call_events import (
    CallEnded,
    CallEvent,
    CallStarted,
    RatingGiven,
    ReasonGiven,
    VoiceMessageRecorded,
    to_record,
)
from rating_core.events.journal import Position, parse
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import load_rules
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade

ARRIVALS_PER_SECOND = 300
T0 = datetime(2026, 11, 23, 1, 0, tzinfo=timezone.utc)


def call_events(n: int, rng: random.Random) -> list[tuple[float, CallEvent]]:
    """One call's events, each with the second it happens at."""
    uid, start = f"1795316432.{n}", n / ARRIVALS_PER_SECOND
    at = T0 + timedelta(seconds=start)
    events: list[tuple[float, CallEvent]] = [(start, CallStarted(
        uid, "12345", at, linkedid=uid, caller_number=f"138{n:08d}", agent_id="1024", queue="社保咨询",
        case_number=f"GD{n}", unit="市人社局", channel="PJSIP/trunk", variables={"agi_request": "agi://x/postcall"}))]
    kind = rng.random()
    if kind < 0.6:
        events.append((start + 8, RatingGiven(uid, "very_satisfied", "dtmf", at)))
    elif kind < 0.8:
        events += [(start + 8, RatingGiven(uid, "dissatisfied", "dtmf", at)),
                   (start + 10, ReasonGiven(uid, ("attitude",), at)),
                   (start + 13, VoiceMessageRecorded(uid, f"/voice/{uid}.wav", 3.0, at))]
    events.append((start + 15, CallEnded(uid, "completed" if kind < 0.8 else "caller_hangup", at)))
    return events


def timeline(calls: int) -> list[CallEvent]:
    rng = random.Random(7)
    timed = sorted((when, n, k, event) for n in range(calls)
                   for k, (when, event) in enumerate(call_events(n, rng)))
    return [event for *_, event in timed]


def cpu_per_call(events: list[CallEvent], calls: int, batch: int) -> float:
    """CPU seconds per call to write ``events`` in batches of ``batch`` (1: a transaction each)."""
    with tempfile.TemporaryDirectory() as home:
        engine = make_engine(f"sqlite:///{home}/store.db")
        upgrade(engine)
        store = RatingStore(engine, load_rules())
        entries = [parse(Position(1, n + 1), json.dumps(to_record(event))) for n, event in enumerate(events)]
        refused: list[str] = []
        started = time.process_time()
        for at in range(0, len(entries), batch):
            store.apply_journaled("bench", entries[at:at + batch], lambda _s, _e, reason: refused.append(reason), set())
            if refused:
                raise SystemExit(f"the store refused events: {refused[:3]}")
        spent = time.process_time() - started
        engine.dispose()
    return spent / calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--batches", default="3,10,100", help="batch sizes to measure, comma-separated")
    args = parser.parse_args()
    events = timeline(args.calls)
    print(f"{args.calls} calls, {len(events)} events, SQLite")
    baseline = cpu_per_call(events, args.calls, 1)
    print(f"baseline (a transaction per event)  {baseline * 1000:6.2f} ms CPU per call")
    for size in (int(n) for n in args.batches.split(",")):
        ours = cpu_per_call(events, args.calls, size)
        print(f"ours, batches of {size:4d} events      {ours * 1000:6.2f} ms CPU per call  "
              f"x{ours / baseline:.2f} of the baseline (below 1 is better)")


if __name__ == "__main__":
    main()
