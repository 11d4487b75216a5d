"""The web tool's busiest pages at a provincial centre's volume on PostgreSQL: p50 and p95 per page.

Run: ``.venv/bin/python benchmarks/web_pages.py --database-url postgresql+psycopg://…/empty_db``
(``--rows`` calls, 10 million by default; the database must be empty: it is migrated and filled here).

The store is filled in SQL as ``figures_scale.py`` fills it (a year of calls, 95 % rated, 差评 by the same
rule), with about 100,000 callback tasks (one 差评 in nine; one in ten of those still open, some claimed by
one of 200 agents) and 200,000 audit entries. Each page is requested through the app (Flask's test client,
signed in, templates rendered): an agent's queue, a search by part of a phone number, a task, the
supervisor's figures page for the last quarter, the audit log. Baselines, measured in the same run: for
the queue and the search, the same question without paging (every matching task loaded, as the queue
did before issue 20); for the audit log, every entry. Target: every page's p95 under 300 ms on 2 cores.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from flask.testing import FlaskClient
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.orm import joinedload

from figures_scale import FILL, fill, last_quarter
from rating_core.complaints.task_states import OPEN_TASK_STATES
from rating_core.ratings.store import RatingStore
from rating_core.reports.figure_rollups import refresh
from rating_core.rules.rulebook import load_rules
from rating_core.rules.settings import Settings
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade
from rating_core.store.models import AuditEntry, CallbackTask, Rating
from web import create_app
from web.accounts import create_user

ZONE = ZoneInfo("Asia/Shanghai")
PASSWORD = "benchmark-password-1"
# After figures_scale's calls and ratings: tasks for one 差评 in nine, audit entries, the users.
TASKS = [
    """INSERT INTO callback_tasks (id, rating_id, hotline, number, mode, state, assigned_agent, created_at, updated_at,
                                   verify_by, escalate_at, appeal_file_by, policy_version, attempts_made)
       SELECT r.id, r.id, c.hotline, c.caller_number, 'agent_first',
              CASE WHEN r.id % 10 = 0 THEN 'pending' ELSE 'closed' END,
              CASE WHEN r.id % 30 = 0 THEN (1000 + r.id % 200)::text END,
              r.rated_at, r.rated_at, r.rated_at + interval '48 hours', r.rated_at + interval '40 hours',
              r.rated_at + interval '2 days', 'bench', 1
       FROM ratings r JOIN calls c ON c.id = r.call_id WHERE r.is_negative AND r.id % 9 = 0""",
    """INSERT INTO audit_log (at, username, role, action, target, detail)
       SELECT now() - (g || ' minutes')::interval, 'agent' || (g % 200), 'agent', 'reveal_number',
              'task:' || g, '{}'::json
       FROM generate_series(1, 200000) AS g""",
    "ANALYZE",
]


def percentiles(work: Callable[[], object], rounds: int) -> tuple[float, float]:
    """p50 and p95 in milliseconds of ``rounds`` runs, after one warm-up."""
    work()
    samples = []
    for _ in range(rounds):
        start = time.perf_counter()
        work()
        samples.append((time.perf_counter() - start) * 1000)
    samples.sort()
    return statistics.median(samples), samples[min(len(samples) - 1, round(0.95 * (len(samples) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", required=True, help="an empty PostgreSQL database")
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args()
    if not args.database_url.startswith("postgresql"):
        sys.exit("this benchmark is for PostgreSQL")
    engine = make_engine(args.database_url)
    upgrade(engine)
    print(f"filling {args.rows:,} calls … ", end="", flush=True)
    print(f"{fill(engine, args.rows, [*FILL[:2], *TASKS]):.0f} s")  # its own tasks, not figures_scale's
    store = RatingStore(engine, load_rules())
    with store.sessions.begin() as session:
        create_user(session, "boss", PASSWORD, "supervisor", "主管")
        create_user(session, "agent", PASSWORD, "agent", "坐席", agent_id="1007")
        tasks = session.scalar(select(func.count()).select_from(CallbackTask)) or 0
        open_one = session.scalar(select(CallbackTask.id).where(CallbackTask.state == "pending").limit(1))
        number = session.scalar(select(CallbackTask.number).where(CallbackTask.id == open_one))
        refresh(session, ZONE, datetime.now(timezone.utc))  # the figures page reads the rollups
    print(f"{tasks:,} callback tasks")
    app = create_app(store, {"SESSION_COOKIE_SECURE": False, "WTF_CSRF_ENABLED": False},
                     Settings(secret_key="benchmark-secret-key-0123456789abcdef"))

    def signed_in(username: str) -> FlaskClient:
        client = app.test_client()
        client.post("/login", data={"username": username, "password": PASSWORD})
        return client

    agent, boss = signed_in("agent"), signed_in("boss")
    part = (number or "")[-6:]
    period = last_quarter(datetime.now(ZONE))

    def page(client: FlaskClient, path: str) -> Callable[[], None]:
        def get() -> None:
            answer = client.get(path)
            assert answer.status_code == 200, (path, answer.status_code)
        return get

    def unpaged(*conditions: ColumnElement[bool]) -> Callable[[], None]:
        """The same question with no page: every matching task and its call loaded, as the queue did before
        (only the query: rendering thousands of rows, as the old page did, would cost more again)."""
        def load() -> None:
            with store.sessions() as session:
                list(session.scalars(select(CallbackTask).join(CallbackTask.rating).join(Rating.call)
                                     .where(*conditions).order_by(CallbackTask.verify_by)
                                     .options(joinedload(CallbackTask.rating).joinedload(Rating.call))))
        return load

    def every_audit_entry() -> None:
        with store.sessions() as session:
            list(session.scalars(select(AuditEntry).order_by(AuditEntry.at.desc())))

    with store.sessions.begin() as session:
        create_user(session, "admin", PASSWORD, "admin", "管理员")
    admin = signed_in("admin")
    mine_or_nobodys = or_(CallbackTask.assigned_agent == "1007", CallbackTask.assigned_agent.is_(None))
    rows = [
        ("agent's queue", page(agent, "/agent/"),
         unpaged(CallbackTask.state.in_(OPEN_TASK_STATES), mine_or_nobodys)),
        (f"search '{part}'", page(boss, f"/agent/?q={part}&scope=all"),
         unpaged(CallbackTask.number.contains(part))),
        ("a task", page(boss, f"/agent/tasks/{open_one}"), None),
        (f"figures {period}", page(boss, f"/supervisor/figures?period={period}"), None),
        ("audit log", page(admin, "/admin/audit"), every_audit_entry),
    ]
    print(f"{'page':<22} {'p50 ms':>8} {'p95 ms':>8}   baseline (unpaged) p50/p95 ms, ratio of p95")
    for name, ours, baseline in rows:
        p50, p95 = percentiles(ours, args.rounds)
        line = f"{name:<22} {p50:8.1f} {p95:8.1f}"
        if baseline is not None:
            b50, b95 = percentiles(baseline, max(3, args.rounds // 8))
            line += f"   {b50:8.0f} / {b95:.0f} → ×{b95 / p95:.1f}"
        print(line + ("" if p95 < 300 else "   (over the 300 ms target)"))


if __name__ == "__main__":
    main()
