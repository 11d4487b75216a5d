"""Seed 003's table over 10 million rated calls on PostgreSQL: the daily rollups against the live aggregate.

Run: ``.venv/bin/python benchmarks/figures_scale.py --database-url postgresql+psycopg://…/empty_db``
(``--rows`` to change the size; the database must be empty: it is migrated and filled here).

The store is filled in SQL (``generate_series``): a year of calls up to now
over two hotlines and 400 agents (each in one of 40 queues and 60 units); 95 % rated, 10 % of those by
default, 6 % 差评 with callback tasks at every stage. Timed, for one quarter
by agent (the largest table a supervisor asks for):

- baseline: the live aggregate over calls ⟕ ratings ⟕ tasks (``unit_counts``);
- ours: a rollup refresh plus the sum over the rollup rows
  (``rolled_up_counts``), i.e. what the figures page does on every request;
  the refresh rebuilds today (its calls began within the last hour), as it
  does on a hotline that is taking calls.

The one-off full rollup build is reported too. Figures are medians of
``--rounds`` runs, as ratios against the baseline of the same run.
"""

from __future__ import annotations

import argparse
import sys
import time
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, text

from rating_core.reports.figure_rollups import refresh, rolled_up_counts
from rating_core.reports.figures import parse_period, unit_counts
from rating_core.store.database import make_engine, make_session_factory
from rating_core.store.migrate import upgrade
from timing import timed

ZONE = ZoneInfo("Asia/Shanghai")
FILL = [
    """INSERT INTO calls (id, uniqueid, hotline, caller_number, agent_id, queue, unit, started_at, progress,
                          menu_plays, variables)
       SELECT g, 'bench.' || g, CASE WHEN g % 400 % 3 = 0 THEN '12333' ELSE '12345' END,
              '138' || lpad((g % 100000000)::text, 8, '0'), (1000 + g % 400)::text, 'queue-' || (g % 400 % 40),
              'unit-' || (g % 400 % 60),
              -- a year of calls up to now, so a live hotline's "today" is in the rollups' refresh
              now() - interval '365 days' + (g::double precision / :rows) * interval '365 days',
              'completed', 1, '{}'::json
       FROM generate_series(1, :rows) AS g""",
    """INSERT INTO ratings (id, call_id, public_id, level, stars, is_negative, channel, is_active, reason_tags,
                            is_adopted, rated_at, updated_at)
       SELECT c.id, c.id, gen_random_uuid()::text,
              CASE WHEN c.id % 17 = 0 THEN 'very_dissatisfied' WHEN c.id % 31 = 0 THEN 'dissatisfied'
                   WHEN c.id % 5 = 0 THEN 'basic' ELSE 'very_satisfied' END,
              CASE WHEN c.id % 17 = 0 THEN 1 WHEN c.id % 31 = 0 THEN 2 WHEN c.id % 5 = 0 THEN 3 ELSE 5 END,
              (c.id % 17 = 0 OR c.id % 31 = 0),
              CASE WHEN c.id % 10 = 3 THEN 'default' ELSE 'dtmf' END, c.id % 10 <> 3, '[]'::json,
              c.id % 101 <> 0, c.started_at + interval '1 minute', c.started_at + interval '1 minute'
       FROM calls c WHERE c.id % 20 <> 0""",
    """INSERT INTO callback_tasks (id, rating_id, hotline, number, mode, state, created_at, updated_at, verify_by,
                                   escalate_at, appeal_file_by, policy_version, attempts_made, verified_at,
                                   rectified_at, citizen_satisfied)
       SELECT r.id, r.id, c.hotline, c.caller_number, 'agent_first', 'closed', r.rated_at, r.rated_at,
              r.rated_at + interval '48 hours', r.rated_at + interval '40 hours', r.rated_at + interval '2 days',
              'bench', 1,
              CASE WHEN r.id % 5 <> 0 THEN r.rated_at + interval '3 hours' END,
              CASE WHEN r.id % 10 < 7 THEN r.rated_at + interval '2 days' END,
              CASE WHEN r.id % 10 < 6 THEN true WHEN r.id % 10 < 7 THEN false END
       FROM ratings r JOIN calls c ON c.id = r.call_id WHERE r.is_negative""",
    "ANALYZE",
]


def fill(engine: Engine, rows: int, statements: list[str] = FILL) -> float:
    """Run ``statements`` into an empty database, the last (ANALYZE) outside the transaction; seconds taken."""
    start = time.perf_counter()
    with engine.begin() as conn:
        if conn.scalar(text("SELECT count(*) FROM calls")):
            sys.exit("the database already holds calls; give an empty one")
        for statement in statements[:-1]:
            conn.execute(text(statement), {"rows": rows})
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text(statements[-1]))
    return time.perf_counter() - start


def last_quarter(now: datetime) -> str:
    quarter = (now.month - 1) // 3  # the current one, 0-based; the last whole one is before it
    return f"{now.year}Q{quarter}" if quarter else f"{now.year - 1}Q4"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--period", help="default: the last whole quarter")
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        sys.exit("this benchmark is for PostgreSQL (the figures target is for PostgreSQL)")
    engine = make_engine(args.database_url)
    upgrade(engine)
    print(f"filling {args.rows:,} calls … ", end="", flush=True)
    print(f"{fill(engine, args.rows):.0f} s")
    sessions = make_session_factory(engine)
    period = parse_period(args.period or last_quarter(datetime.now(ZONE)), ZONE)

    start = time.perf_counter()
    with sessions.begin() as session:
        days = refresh(session, ZONE, datetime.now(timezone.utc))
    build = time.perf_counter() - start
    with sessions() as session:
        rollup_rows = session.scalar(text("SELECT count(*) FROM figure_rollups"))

    def live() -> None:
        with sessions() as session:
            unit_counts(session, period, "agent")

    def rolled() -> None:
        with sessions.begin() as session:
            refresh(session, ZONE, datetime.now(timezone.utc))
            rolled_up_counts(session, period, "agent")

    with sessions() as session:
        assert unit_counts(session, period, "agent") == rolled_up_counts(session, period, "agent"), "must agree"
    baseline = timed(live, args.rounds)
    ours = timed(rolled, args.rounds)
    print(f"rollup build (once): {days} days → {rollup_rows:,} rows in {build:.1f} s")
    print(f"{period.label} by agent over {args.rows:,} calls: live aggregate {baseline * 1000:.0f} ms, "
          f"rollups (refresh + read) {ours * 1000:.1f} ms → ×{baseline / ours:.0f} faster than the baseline")


if __name__ == "__main__":
    main()
