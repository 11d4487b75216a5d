"""How fast the store takes a journal back after an outage: a centre's 6 s of events, applied from disk.

Run: ``.venv/bin/python benchmarks/journal_drain.py [--events 21700] [--database-url postgresql+psycopg://…/empty_db]``

Issue 17 measured 21,700 events for a 6 s database outage under full load, and
asked that they be in the store within 10 s of its return. The events (calls
that start, are rated — a 差评 in four, with its reason — and end, interleaved
as on a busy server) are appended to a real journal, then applied by
:class:`rating_core.ratings.journal_replay.JournalApplier` as the store process does
when the database comes back. The baseline, in the same run and on the same
database, is one transaction per event (what a replay that applies its events
one by one costs), measured on a tenth of the events and scaled.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy import MetaData, text

from rating_core.events.call_events import CallEnded, CallEvent, CallStarted, RatingGiven, ReasonGiven
from rating_core.events.journal import Journal
from rating_core.ratings.journal_replay import JournalApplier
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import load_rules
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=timezone.utc)


def events(count: int, tag: str) -> list[CallEvent]:
    """About ``count`` events of calls in progress together, in the order a busy server journals them."""
    rng = random.Random(17)
    timed: list[tuple[float, int, CallEvent]] = []
    n = 0
    while len(timed) < count:
        uid, start = f"{tag}.{n}", rng.uniform(0, 6)
        at = T0 + timedelta(seconds=start)
        timed.append((start, len(timed), CallStarted(uid, "12345", at, caller_number=f"139{n:08d}", agent_id="1024")))
        negative = rng.random() < 0.25
        timed.append((start + 2, len(timed), RatingGiven(uid, "dissatisfied" if negative else "satisfied", "dtmf", at)))
        if negative:
            timed.append((start + 4, len(timed), ReasonGiven(uid, ("attitude",), at)))
        timed.append((start + 5, len(timed), CallEnded(uid, "completed", at, "thanks")))
        n += 1
    return [event for *_, event in sorted(timed, key=lambda item: item[:2])][:count]


def fresh(url: str | None, folder: Path) -> RatingStore:
    if url is None:
        engine = make_engine(f"sqlite:///{folder / 'store.db'}")
    else:
        engine = make_engine(url)
        with engine.begin() as conn:
            metadata = MetaData()
            metadata.reflect(conn)
            metadata.drop_all(conn)
            conn.execute(text("DROP TABLE IF EXISTS alembic_version"))
    upgrade(engine)
    return RatingStore(engine, load_rules())


def drain_seconds(store: RatingStore, folder: Path, batch: list[CallEvent], per_event: bool) -> float:
    journal = Journal(folder / "journal", min_free_bytes=0)
    journal.open()
    if per_event:
        for event in batch:
            journal.append([event])
    else:
        for at in range(0, len(batch), 200):  # as the writer's group commits leave them
            journal.append(batch[at:at + 200])
    applier = JournalApplier(store, journal.directory, journal.stream, batch=1 if per_event else 500,
                             take_over=False)
    started = time.perf_counter()
    applier.drain()
    spent = time.perf_counter() - started
    journal.close(applied=True)
    if applier.applied != len(batch):
        raise SystemExit(f"applied {applier.applied} of {len(batch)}")
    return spent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=21_700)
    parser.add_argument("--database-url", default=None, help="an empty PostgreSQL database (default: SQLite)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as home:
        folder = Path(home)
        store = fresh(args.database_url, folder)
        ours = drain_seconds(store, folder / "ours", events(args.events, "ours"), per_event=False)
        sample = events(args.events // 10, "base")
        base = drain_seconds(store, folder / "base", sample, per_event=True) * args.events / len(sample)
        store.engine.dispose()
    name = store.engine.dialect.name
    print(f"{args.events} journaled events on {name}: ours {ours:.1f} s ({args.events / ours:,.0f} events/s), "
          f"a transaction per event {base:.1f} s (scaled from {len(sample)}): x{ours / base:.2f} of the baseline "
          f"(below 1 is faster); {'within' if ours <= 10 else 'beyond'} the 10 s the issue asks")


if __name__ == "__main__":
    main()
