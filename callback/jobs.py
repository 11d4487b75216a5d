"""The callback loop's RQ jobs: plain functions that take ids, reading and writing the store.

RQ (with Redis) only carries *when* to look at a task; *what* is due lives in
the store. So a job that Redis loses is found again by :func:`sweep_due`,
which ``rq cron`` runs every minute (one cron process per deployment: it has
no leader election) and ``hotline-eval callbacks run-due`` runs by hand.
Jobs are idempotent: a task is dialled only through
:func:`rating_core.complaints.callback_tasks.request_attempt`, which checks its state.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from functools import cache

from redis import Redis
from rq import Queue
from rq.exceptions import NoSuchJobError
from rq.job import Job, JobStatus
from sqlalchemy.orm import Session, sessionmaker

from rating_core.complaints.callback_tasks import SweepResult, request_attempt, sweep
from rating_core.rules.log_context import about_task
from rating_core.rules.rulebook import Rules, load_rules
from rating_core.rules.settings import Settings
from rating_core.store.database import make_engine, make_session_factory

log = logging.getLogger(__name__)

QUEUE_NAME = "callbacks"
# Transcripts take minutes of CPU: a queue of their own, so a deployment can give them their own worker
# (`hotline-eval worker --queue transcripts`) and callbacks and webhooks never wait behind them.
TRANSCRIPT_QUEUE_NAME = "transcripts"
SWEEP_INTERVAL_SECONDS = 60
ACTIVE_JOB_STATUSES = {JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.STARTED, JobStatus.DEFERRED}


@cache
def settings() -> Settings:
    """The worker's settings: RQ runs these jobs by name in a process it made, so they are the edge."""
    return Settings()


def redis_connection(url: str | None = None) -> Redis:
    return Redis.from_url(url or settings().redis_url, socket_connect_timeout=5, socket_timeout=10)


def callback_queue(connection: Redis | None = None) -> Queue:
    return Queue(QUEUE_NAME, connection=connection or redis_connection())


@cache
def _store() -> tuple[sessionmaker[Session], Rules]:
    # One engine per worker process, from the same environment as every other process.
    given = settings()
    return (make_session_factory(make_engine(given.database_url), region_code=given.region_code,
                                 number_key=given.number_key),
            load_rules(given.rules_file))


def _now(now_iso: str | None) -> datetime:
    return datetime.fromisoformat(now_iso) if now_iso else datetime.now(timezone.utc)


def request_job_id(task_id: int, attempt_seq: int) -> str:
    # RQ job ids: letters, digits, "_" and "-" only.
    return f"callback-request-{int(task_id)}-{int(attempt_seq)}"


def request_callback(task_id: int, now_iso: str | None = None) -> str:
    """RQ job: queue the next dial of a task for the dialer, if the policy allows it now."""
    with about_task(task_id):  # every line of the job, the store's included, is about this task
        sessions, rules = _store()
        with sessions.begin() as session:
            decision = request_attempt(session, rules.callback, task_id, _now(now_iso), "system:rq")
        if decision.attempt_id is not None:
            log.info("task %s: attempt %s queued for the dialer", task_id, decision.attempt_id)
            return f"queued attempt {decision.attempt_id}"
        log.info("task %s: not dialled now (%s: %s)", task_id, decision.reason, decision.message)
        return f"not dialled: {decision.reason}"


def enqueue_request(queue: Queue, task_id: int, attempt_seq: int, at: datetime | None = None) -> bool:
    """Enqueue :func:`request_callback` once per (task, attempt); False if it is already waiting."""
    job_id = request_job_id(task_id, attempt_seq)
    try:
        if Job.fetch(job_id, connection=queue.connection).get_status() in ACTIVE_JOB_STATUSES:
            return False
    except NoSuchJobError:
        pass
    if at is None:
        queue.enqueue(request_callback, task_id, job_id=job_id)
    else:
        queue.enqueue_at(at, request_callback, task_id, job_id=job_id)
    return True


def sweep_due(now_iso: str | None = None, queue: Queue | None = None) -> dict[str, int]:
    """RQ cron job (and ``callbacks run-due``): one pass over the store, enqueueing what is due."""
    sessions, rules = _store()
    with sessions.begin() as session:
        result: SweepResult = sweep(session, rules.callback, _now(now_iso))
    queue = queue or callback_queue()
    enqueued = sum(enqueue_request(queue, task_id, seq) for task_id, seq in result.due)
    log.info("sweep: %d due, %d enqueued, %d escalated, %d deadlines recomputed",
             len(result.due), enqueued, result.escalated, result.recomputed)
    return {"due": len(result.due), "enqueued": enqueued, "escalated": result.escalated,
            "recomputed": result.recomputed}


def deliver_webhooks() -> dict[str, int]:
    """RQ cron job (and ``webhooks deliver``): one delivery pass over the outbox."""
    import httpx

    from delivery.webhooks import deliver_pass
    from rating_core.outbox.render import deployment_context

    sessions, rules = _store()
    context = deployment_context(rules, settings())
    with httpx.Client() as client:
        result = deliver_pass(sessions, client, context=context)
    return {"fanned_out": result.fanned_out, "delivered": result.delivered, "failed": result.failed,
            "dead": result.dead, "held": result.held, "unchanged": result.unchanged}


def default_unrated_calls(now_iso: str | None = None) -> int:
    """RQ cron job (and ``lifecycle run``): 未评价 calls past their period get the default rating."""
    from rating_core.ratings.lifecycle import default_unrated

    sessions, rules = _store()
    with sessions.begin() as session:
        given = default_unrated(session, rules, _now(now_iso))
    if given:
        log.info("lifecycle: %d call(s) given the default rating", given)
    return given


def transcribe_voice_messages(now_iso: str | None = None) -> dict[str, int]:
    """RQ cron job: write down the 差评 voice messages waiting for a transcript (free mode, in this process)."""
    import dataclasses

    from speech_models.voice_transcripts import transcribe_waiting

    sessions, rules = _store()
    return dataclasses.asdict(transcribe_waiting(sessions, rules, _now(now_iso), models_dir=settings().models_dir))


def send_sms_reminders(now_iso: str | None = None) -> dict[str, int]:
    """RQ cron job (and ``lifecycle sms``): send the 补充评价 SMS that are due, one per unrated call."""
    import dataclasses

    import httpx

    from delivery.sms import SmsSettings, send_due

    sessions, rules = _store()
    with httpx.Client() as client:
        result = send_due(sessions, rules, client, SmsSettings.from_settings(settings()), _now(now_iso))
    return dataclasses.asdict(result)


def purge_expired(now_iso: str | None = None) -> dict[str, int]:
    """RQ cron job, daily: personal data past the rules' retention periods deleted or hashed, and audited.

    Without HOTLINE_EVAL_NUMBER_KEY the numbers that are due stay as they are (logged as an error each day
    until the key is set); recordings and the audit log are purged all the same.
    """
    import dataclasses

    from rating_core.ratings.retention import run_retention
    from rating_core.ratings.retention_files import RetentionPlaces

    sessions, rules = _store()
    given = settings()
    with sessions.begin() as session:
        report = run_retention(session, rules.retention, _now(now_iso), number_key=given.number_key,
                               places=RetentionPlaces.under_home(given.home, rules))
    for line in report.lines():
        log.info("retention: %s", line)
    if report.numbers_refused:
        log.error("retention: %s", report.numbers_refused)
    return (dataclasses.asdict(report.files) | dataclasses.asdict(report.numbers)
            | {"audit_entries": report.audit_entries, "numbers_refused": int(report.numbers_refused is not None)})
