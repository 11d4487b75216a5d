"""The ``hotline-eval worker`` process: an RQ worker that waits for Redis instead of dying without it.

RQ's worker cannot start without Redis (a traceback), and once running it
retries a lost Redis only while it waits for jobs: a ``ConnectionError``
anywhere else (the heartbeat after a job, maintenance, the suspension check)
or a socket timeout ends ``work()`` with "quitting", and its teardown, which
talks to Redis too, may end it with a traceback. A worker that exits leaves
every callback and transcript job to nobody until someone notices, while
Redis usually comes back by itself (a restart, a failover, a network blip).
So this process waits for Redis with capped backoff, saying so on each try,
and starts a fresh RQ worker whenever one ends without being asked to stop.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode, urlsplit

from redis import Redis
from redis.exceptions import AuthenticationError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq import Queue, Worker
from rq.job import Job

from callback.jobs import redis_connection, request_callback, settings
from rating_core.rules.log_context import about_task
from rating_core.rules.metrics import WORKER_JOBS

log = logging.getLogger(__name__)

FIRST_DELAY = 1.0
MAX_DELAY = 30.0
REDIS_TROUBLE = (RedisConnectionError, RedisTimeoutError)


def shown_url(url: str) -> str:
    """``url`` fit for a log line: any password, in the userinfo or the query, replaced by ``***``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    userinfo, at, hostport = netloc.rpartition("@")
    if at and ":" in userinfo:
        netloc = f"{userinfo.split(':', 1)[0]}:***@{hostport}"
    query = urlencode([(k, "***" if k == "password" else v) for k, v in parse_qsl(parts.query, keep_blank_values=True)],
                      safe="*/")
    # Put together by hand: urlunsplit drops the "//" of unix:///path/redis.sock.
    return f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")


def wait_for_redis(url: str) -> Redis:
    """A connection to ``url`` once Redis answers a PING; until then try again, 1 s doubling to 30 s.

    A refused password is raised at once: it is a configuration to fix, not
    an outage to wait out.
    """
    connection = redis_connection(url)
    delay = FIRST_DELAY
    waited = False
    while True:
        try:
            connection.ping()
        except AuthenticationError:
            raise
        except REDIS_TROUBLE as exc:
            log.warning("Redis at %s unreachable (%s); retrying in %g s", shown_url(url), exc, delay)
            time.sleep(delay)
            delay = min(delay * 2, MAX_DELAY)
            waited = True
            continue
        if waited:
            log.info("Redis at %s answers again", shown_url(url))
        return connection


# How long the worker's command listener waits for a message before it looks whether it should stop.
PUBSUB_SLEEP = 1.0


class _Worker(Worker):
    """RQ's forking worker, remembering whether it was asked to stop (a signal, or ``rq``'s shutdown command)."""

    # RQ's own retry while it waits for jobs: the same cap as ours, not RQ's 60 s.
    max_connection_wait_time = MAX_DELAY
    stop_asked = False

    def request_stop(self, signum, frame):
        self.stop_asked = True
        super().request_stop(signum, frame)

    def subscribe(self) -> None:
        """RQ's own, but its listener thread checks for a stop every second, not every 60: RQ 2.12 runs it
        with ``sleep_time=60`` and redis-py joins it without a timeout, so a stopped worker sometimes waited a
        whole minute (seen under systemd: stops of 1 s and of 61 s alternating)."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(  # type: ignore[assignment]  # RQ declares it as None
            sleep_time=PUBSUB_SLEEP, daemon=True, exception_handler=self._pubsub_exception_handler)

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Run the job in its work horse, then count how it ended here, in the process that serves the metrics
        (a count made in the horse would end with it).

        The whole run is about the job's task, if it has one: RQ's own lines for the job ("Job OK", the failure
        with its traceback, a horse killed) are logged outside the job's own ``about_task``, and would carry no
        ``task_id`` otherwise. Here it covers both processes at once: the horse is forked inside, and a fork
        keeps the context it was made in."""
        try:
            with about_task(job_task_id(job)):
                super().execute_job(job, queue)
        finally:
            WORKER_JOBS.labels(job_name(job), job_outcome(job)).inc()


# The jobs about one callback task, each given the task's id as its first argument.
TASK_JOBS = frozenset({f"{request_callback.__module__}.{request_callback.__qualname__}"})


def job_task_id(job: Job) -> int | None:
    """The callback task ``job`` is about, or None for a job about no one task (a pass, a transcript)."""
    try:
        if job.func_name in TASK_JOBS and job.args and isinstance(job.args[0], int):
            return job.args[0]
    except Exception:  # a job whose payload cannot be read back: RQ fails it and says why
        return None
    return None


def job_name(job: Job) -> str:
    """The job's function, without its package (``place_call``): one of the few this project enqueues."""
    try:
        return (job.func_name or "unknown").rpartition(".")[2]
    except Exception:  # a job whose function cannot be read back (an older release's, a corrupt payload)
        return "unknown"


def job_outcome(job: Job) -> str:
    """How the job ended, as RQ recorded it (finished, failed, stopped, …); "unknown" when Redis cannot say."""
    try:
        status = job.get_status(refresh=True)
    except Exception:  # Redis lost mid-job: the job still ran
        return "unknown"
    return str(status.value) if status is not None else "unknown"


def run_worker(queue_names: Sequence[str], *, burst: bool = False, url: str | None = None) -> None:
    """Serve ``queue_names`` (with RQ's scheduler) until asked to stop, or, with ``burst``, until they are empty.

    A worker that ends on its own is started again once Redis answers; after
    quick ends in a row the restarts back off too, so a worker that cannot
    run at all is not restarted in a tight loop.
    """
    url = url or settings().redis_url
    restart_delay = FIRST_DELAY
    try:
        while True:
            connection = wait_for_redis(url)
            started = time.monotonic()
            worker: _Worker | None = None
            try:
                # Inside the try: making the worker talks to Redis too, which may be gone again already.
                worker = _Worker([Queue(name, connection=connection) for name in queue_names], connection=connection)
                worker.work(burst=burst, with_scheduler=True)
            except REDIS_TROUBLE as exc:
                log.warning("RQ worker lost Redis at %s (%s)", shown_url(url), exc)
            else:
                if burst or worker.stop_asked:
                    return
            finally:
                if worker is not None:
                    _retire(worker)
            if time.monotonic() - started > MAX_DELAY:
                restart_delay = FIRST_DELAY  # it had been running: this is a new trouble
            log.warning("RQ worker ended without being asked to stop; starting a new one in %g s", restart_delay)
            time.sleep(restart_delay)
            restart_delay = min(restart_delay * 2, MAX_DELAY)
    except KeyboardInterrupt:
        log.info("worker stopped")


def _retire(worker: Worker) -> None:
    """Leave nothing of an ended worker behind, however far its teardown got, and give the signals back."""
    # Its pubsub thread retries a lost Redis forever, logging every 2 s, unless stopped.
    if worker.pubsub_thread is not None and worker.pubsub_thread.is_alive():
        worker.pubsub_thread.stop(timeout=0)
    scheduler = worker.scheduler
    process = getattr(scheduler, "_process", None) if scheduler is not None else None
    if process is not None and process.is_alive():
        worker.stop_scheduler()
    # Between workers, Ctrl-C and SIGTERM stop this process as they would before the first one.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
