"""The callback loop on a real Redis: the sweep, RQ jobs, the scheduler, `rq cron`, and a Redis that forgets."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import redis
from rq import Queue, SimpleWorker
from rq.registry import ScheduledJobRegistry
from sqlalchemy import select

from callback import jobs
from conftest import worker_redis_url
from hotline_eval.demo_callbacks import write_demo_rules
from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import load_rules
from rating_core.store.database import make_engine
from rating_core.store.migrate import upgrade
from rating_core.store.models import CallbackAttempt, CallbackTask

REDIS_URL = worker_redis_url(0)  # the RQ tests empty it: a database of each xdist worker's own


@pytest.fixture
def redis_conn() -> Iterator[redis.Redis]:
    conn = redis.Redis.from_url(REDIS_URL)
    try:
        conn.ping()
    except redis.ConnectionError as exc:
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail(f"Redis required but unreachable at {REDIS_URL}: {exc}")
        pytest.skip(f"Redis unreachable ({exc}); `make test` starts it")
    conn.flushdb()
    yield conn
    conn.flushdb()


@pytest.fixture
def loop_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RatingStore]:
    """What a worker process sees: DATABASE_URL, REDIS_URL and a rules file that calls around the clock."""
    rules_file = write_demo_rules(tmp_path)
    url = f"sqlite:///{tmp_path / 'store.db'}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("REDIS_URL", REDIS_URL)
    monkeypatch.setenv("HOTLINE_EVAL_RULES", str(rules_file))
    jobs.settings.cache_clear()
    jobs._store.cache_clear()
    engine = make_engine(url)
    upgrade(engine)
    yield RatingStore(engine, load_rules(rules_file))
    jobs.settings.cache_clear()
    jobs._store.cache_clear()
    engine.dispose()


def negative(store: RatingStore, uid: str, number: str) -> None:
    now = datetime.now(timezone.utc)
    store.apply([CallStarted(uniqueid=uid, hotline="12345", at=now, caller_number=number),
                 RatingGiven(uid, "very_dissatisfied", "dtmf", now)])


def attempts(store: RatingStore) -> list[tuple[int, str]]:
    with store.sessions() as session:
        return [(a.task_id, a.status) for a in session.scalars(select(CallbackAttempt).order_by(CallbackAttempt.id))]


def test_the_sweep_enqueues_each_due_task_once_and_a_worker_queues_its_attempt(
    redis_conn: redis.Redis, loop_env: RatingStore
) -> None:
    negative(loop_env, "a", "13800000001")
    negative(loop_env, "b", "13800000002")
    queue = Queue(jobs.QUEUE_NAME, connection=redis_conn)
    assert jobs.sweep_due(queue=queue)["enqueued"] == 2
    assert jobs.sweep_due(queue=queue)["enqueued"] == 0, "a waiting job must not be enqueued twice"
    assert sorted(queue.job_ids) == ["callback-request-1-1", "callback-request-2-1"]
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert attempts(loop_env) == [(1, "queued"), (2, "queued")]
    with loop_env.sessions() as session:
        assert {t.state for t in session.scalars(select(CallbackTask))} == {"dialing"}
    # Jobs are idempotent: running the same request again dials nothing more.
    assert jobs.request_callback(1) == "not dialled: wrong_state"  # the task is dialing already


def test_jobs_redis_forgets_are_found_again_by_the_sweep(redis_conn: redis.Redis, loop_env: RatingStore) -> None:
    negative(loop_env, "a", "13800000001")
    queue = Queue(jobs.QUEUE_NAME, connection=redis_conn)
    assert jobs.sweep_due(queue=queue)["enqueued"] == 1
    redis_conn.flushdb()  # what a restart of a Redis that keeps nothing on disk does
    assert queue.count == 0
    assert jobs.sweep_due(queue=queue)["enqueued"] == 1
    SimpleWorker([queue], connection=redis_conn).work(burst=True)
    assert attempts(loop_env) == [(1, "queued")]


def test_a_dead_redis_loses_nothing(redis_conn: redis.Redis, loop_env: RatingStore) -> None:
    negative(loop_env, "a", "13800000001")  # the task is written with the rating, Redis or not
    dead = Queue(jobs.QUEUE_NAME, connection=redis.Redis(port=1, socket_connect_timeout=0.5))
    with pytest.raises(redis.ConnectionError):
        jobs.sweep_due(queue=dead)
    queue = Queue(jobs.QUEUE_NAME, connection=redis_conn)
    assert jobs.sweep_due(queue=queue)["enqueued"] == 1


def test_a_retry_waits_in_rq_scheduler_until_due(redis_conn: redis.Redis, loop_env: RatingStore) -> None:
    negative(loop_env, "a", "13800000001")
    queue = Queue(jobs.QUEUE_NAME, connection=redis_conn)
    assert jobs.enqueue_request(queue, 1, 1, at=datetime.now(timezone.utc) + timedelta(hours=1))
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == ["callback-request-1-1"]
    assert not jobs.enqueue_request(queue, 1, 1), "already scheduled"
    assert jobs.enqueue_request(queue, 1, 2, at=datetime.now(timezone.utc) - timedelta(seconds=1))
    SimpleWorker([queue], connection=redis_conn).work(burst=True, with_scheduler=True)
    assert attempts(loop_env) == [(1, "queued")]
    assert ScheduledJobRegistry(queue=queue).get_job_ids() == ["callback-request-1-1"]


def test_rq_cron_runs_the_sweep_from_the_shipped_config(redis_conn: redis.Redis, loop_env: RatingStore) -> None:
    negative(loop_env, "a", "13800000001")
    rq = Path(sys.executable).with_name("rq")
    cron = subprocess.Popen([str(rq), "cron", "--url", REDIS_URL, "callback.cron_config"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=os.environ.copy())
    queue = Queue(jobs.QUEUE_NAME, connection=redis_conn)
    try:
        deadline = time.monotonic() + 20
        while queue.count < 4 and cron.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        cron.terminate()
        output = cron.communicate(timeout=10)[0].decode(errors="replace")
    # The shipped cron jobs all come due at once: the sweep, the webhook pass, the default ratings, the SMS.
    assert sorted(job.func_name for job in queue.jobs) == ["callback.jobs.default_unrated_calls",
                                                           "callback.jobs.deliver_webhooks",
                                                           "callback.jobs.send_sms_reminders",
                                                           "callback.jobs.sweep_due"], output
    SimpleWorker([queue], connection=redis_conn).work(burst=True)  # the sweep, then the request it enqueued
    assert attempts(loop_env) == [(1, "queued")], output
