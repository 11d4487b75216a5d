"""RQ's own lines about a job of one callback task carry its ``task_id``, as the job's own lines do.

A real ``hotline-eval worker`` (RQ's forking worker, its work horse a child process) on the suite's Redis,
its JSON lines read from its stderr: what an operator's log shipper gets.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import redis
from rq import Queue

import test_rq_callbacks
from callback import jobs
from rating_core.ratings.store import RatingStore
from test_rq_callbacks import negative

CLI = str(Path(sys.executable).with_name("hotline-eval"))
loop_env = test_rq_callbacks.loop_env  # the fixtures: what a worker process sees, and the RQ tests' Redis
redis_conn = test_rq_callbacks.redis_conn


def test_rq_s_own_job_lines_name_the_task_the_job_is_about(redis_conn: redis.Redis, loop_env: RatingStore,
                                                           tmp_path: Path) -> None:
    negative(loop_env, "a", "13800000001")
    negative(loop_env, "b", "13800000002")
    queue = Queue(jobs.QUEUE_NAME, connection=redis_conn)
    assert jobs.enqueue_request(queue, 1, 1)
    # Task 2's job fails before it touches the store (a time that is no time): RQ logs the traceback.
    broken = queue.enqueue(jobs.request_callback, 2, "not a time", job_id="callback-request-2-1")
    unrated = queue.enqueue(jobs.default_unrated_calls)  # a pass, about no one task
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path / "home"))
    done = subprocess.run([CLI, "--log-format", "json", "worker", "--queue", jobs.QUEUE_NAME, "--burst"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stderr.splitlines()]
    rq_lines = [record for record in records if record["logger"] == "rq.worker"]

    def about(job_id: str, text: str) -> list[object]:
        return [record.get("task_id") for record in rq_lines
                if job_id in str(record["message"]) and text in str(record["message"])]

    assert about("callback-request-1-1", "Job OK") == [1], done.stderr
    assert about(broken.id, "exception raised while executing") == [2], done.stderr
    assert about(unrated.id, "Job OK") == [None], done.stderr
    # The job's own line, as before; the worker's lines about no job name no task.
    assert {"message": "task 1: attempt 1 queued for the dialer", "task_id": 1}.items() <= next(
        record for record in records if record["logger"] == "callback.jobs").items()
    assert [record.get("task_id") for record in rq_lines if "done, quitting" in str(record["message"])] == [None]
