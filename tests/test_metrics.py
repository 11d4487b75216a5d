"""Prometheus metrics: counted where things happen, served by each process, and /metrics never public."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
import yaml
from prometheus_client import REGISTRY
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.parser import text_string_to_metric_families
from rq import Queue

from conftest import WebSite, worker_redis_url
from ivr.service import IvrService
from simulators.asterisk_agi import Caller, Press, run_call
from web import create_app

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "Zq8-metrics-token-for-tests-7xYb3NwK"
REDIS_URL = worker_redis_url(0)


def value(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def samples(body: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(body) for sample in family.samples}


# -- the FastAGI server ---------------------------------------------------------------------------------


async def test_a_rated_call_moves_the_fastagi_servers_counters(ivr: IvrService) -> None:
    rated = dict(hotline="12345", level="satisfied", channel="dtmf")
    before = (value("hotline_eval_ratings_total", **rated), value("hotline_eval_agi_sessions_total", outcome="ok"),
              value("hotline_eval_agi_turn_seconds_count"), value("hotline_eval_store_events_applied_total"),
              value("hotline_eval_store_batch_seconds_count"))
    caller = Caller([Press("2")], callerid="13812345678", variables={"EVAL_AGENT": "1024", "EVAL_QUEUE": "社保咨询"})
    result = await run_call("127.0.0.1", ivr.server.port, caller, uniqueid="1795316432.9001",
                            script="postcall?hotline=12345")
    assert result.closed_by_server and not result.error
    assert value("hotline_eval_ratings_total", **rated) == before[0] + 1
    assert value("hotline_eval_agi_sessions_total", outcome="ok") == before[1] + 1
    # A turn per command the server sent: each ends a wait that began with Asterisk's reply.
    assert value("hotline_eval_agi_turn_seconds_count") == before[2] + len(result.channel.commands)
    # The call's end waited for the store: the store process's reports of it have been counted.
    await ivr.settled()
    assert value("hotline_eval_store_events_applied_total") > before[3]
    assert value("hotline_eval_store_batch_seconds_count") > before[4]
    assert value("hotline_eval_store_available") == 1
    assert value("hotline_eval_spool_pending_events") == 0
    assert value("hotline_eval_agi_calls_in_progress") == 0


async def test_a_call_to_no_script_counts_as_failed(ivr: IvrService) -> None:
    before = value("hotline_eval_agi_sessions_total", outcome="failed")
    caller = Caller([Press("2")], callerid="13812345678", variables={})
    await run_call("127.0.0.1", ivr.server.port, caller, uniqueid="1795316432.9002", script="no-such-script")
    assert value("hotline_eval_agi_sessions_total", outcome="failed") == before + 1


# -- the web tool ---------------------------------------------------------------------------------------


def metrics_app(web_site: WebSite, **config: object):
    return create_app(web_site.store, {"SECRET_KEY": "test-secret", "SIGN_IN_STORAGE": "memory://",
                                       "METRICS_TOKEN": TOKEN, "METRICS_FROM": (),
                                       "READINESS_REDIS_URL": REDIS_URL, **config})


def test_web_metrics_are_refused_without_the_token(web_site: WebSite) -> None:
    client = metrics_app(web_site).test_client()
    assert client.get("/metrics").status_code == 403
    assert client.get("/metrics", headers={"Authorization": "Bearer wrong-token"}).status_code == 403
    # With neither a token nor an address configured, nobody reads them, not even from this host.
    closed = metrics_app(web_site, METRICS_TOKEN=None).test_client()
    assert closed.get("/metrics", headers={"Authorization": "Bearer "}).status_code == 403
    assert closed.get("/metrics", environ_base={"REMOTE_ADDR": "127.0.0.1"}).status_code == 403


def test_web_metrics_show_callback_tasks_by_state_from_the_database(web_site: WebSite) -> None:
    client = metrics_app(web_site).test_client()
    response = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status_code == 200
    found = samples(response.get_data(as_text=True))
    assert found[("hotline_eval_database_up", ())] == 1
    # The fixture's one 差评, its callback answered: one contacted task of hotline 12345.
    tasks = {labels: count for (name, labels), count in found.items() if name == "hotline_eval_callback_tasks"}
    assert tasks == {(("hotline", "12345"), ("state", "contacted")): 1}
    assert ("hotline_eval_last_rating_timestamp_seconds", ()) in found
    # This process's own series come with them.
    assert any(name.startswith("hotline_eval_agi_calls_in_progress") for name, _ in found)


def test_web_metrics_answer_a_configured_address(web_site: WebSite) -> None:
    from ipaddress import ip_network

    app = metrics_app(web_site, METRICS_TOKEN=None, METRICS_FROM=(ip_network("10.0.5.0/24"),))
    client = app.test_client()
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.0.5.7"}).status_code == 200
    assert client.get("/metrics", environ_base={"REMOTE_ADDR": "10.0.6.7"}).status_code == 403


def test_readyz_fails_when_the_database_is_unreachable(web_site: WebSite) -> None:
    from rating_core.ratings.store import RatingStore
    from rating_core.store.database import make_engine

    client = metrics_app(web_site).test_client()
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.get_json()
    port = free_port()  # nothing listens there
    gone = RatingStore(make_engine(f"postgresql+psycopg://nobody:x@127.0.0.1:{port}/nothing"), web_site.store.rules)
    down = create_app(gone, {"SECRET_KEY": "test-secret", "SIGN_IN_STORAGE": "memory://", "METRICS_TOKEN": TOKEN,
                             "READINESS_REDIS_URL": REDIS_URL}).test_client()
    response = down.get("/readyz")
    assert response.status_code == 503 and response.get_json()["failed"] == ["database"]
    assert down.get("/healthz").status_code == 200  # up, not ready
    scraped = samples(down.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).get_data(as_text=True))
    assert scraped[("hotline_eval_database_up", ())] == 0


def test_readyz_fails_when_redis_is_unreachable(web_site: WebSite) -> None:
    client = metrics_app(web_site, READINESS_REDIS_URL=f"redis://127.0.0.1:{free_port()}/0").test_client()
    response = client.get("/readyz")
    assert response.status_code == 503 and response.get_json()["failed"] == ["redis"]


# -- the worker and the dialer --------------------------------------------------------------------------


@pytest.fixture
def redis_conn() -> Iterator[redis.Redis]:
    connection = redis.Redis.from_url(REDIS_URL)
    connection.flushdb()
    yield connection
    connection.flushdb()


def test_the_worker_counts_its_jobs_in_the_process_that_serves_them(redis_conn: redis.Redis) -> None:
    from callback.rq_worker import run_worker

    queue = Queue("metrics-test", connection=redis_conn)
    queue.enqueue(len, "abc")
    queue.enqueue("builtins.int", "not a number")  # fails in the work horse
    before = (value("hotline_eval_worker_jobs_total", job="len", outcome="finished"),
              value("hotline_eval_worker_jobs_total", job="int", outcome="failed"))
    run_worker(["metrics-test"], burst=True, url=REDIS_URL)  # forks a work horse per job
    assert value("hotline_eval_worker_jobs_total", job="len", outcome="finished") == before[0] + 1
    assert value("hotline_eval_worker_jobs_total", job="int", outcome="failed") == before[1] + 1


def scrape(port: int, process: subprocess.Popen[bytes]) -> str:
    """The endpoint's page, once the process serves it (a generous bound for its start, not a speed check)."""
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
                return response.read().decode()
        except (urllib.error.URLError, ConnectionError):
            if process.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"no metrics endpoint; the process ended with {process.returncode}") from None
            time.sleep(0.1)


@pytest.mark.parametrize(("command", "series"), [
    (["dialer"], "hotline_eval_dialer_channels_in_use"),
    (["worker", "--queue", "callbacks"], "hotline_eval_worker_jobs"),
])
def test_the_dialer_and_the_worker_serve_their_metrics(command: list[str], series: str, tmp_path: Path) -> None:
    port = free_port()
    env = {**os.environ, "HOTLINE_EVAL_HOME": str(tmp_path), "REDIS_URL": REDIS_URL,
           "AMI_PORT": str(free_port()), "AMI_SECRET": "not-used-nothing-listens"}
    env.pop("DATABASE_URL", None)
    process = subprocess.Popen([sys.executable, "-m", "hotline_eval", *command, "--metrics", f"127.0.0.1:{port}"],
                               env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        page = scrape(port, process)
    finally:
        process.terminate()
        process.wait(30)
    assert f"# TYPE {series}" in page
    assert "process_cpu_seconds_total" in page  # the process's own collectors: "process down" alerts on `up`


# -- the dashboard and the alert rules ------------------------------------------------------------------


def metric_names() -> set[str]:
    from rating_core.rules import metrics

    names = set()
    for thing in vars(metrics).values():
        if not isinstance(thing, MetricWrapperBase):
            continue
        for family in thing.describe():
            names.add(family.name)
    return names | {"hotline_eval_database_up", "hotline_eval_callback_tasks", "hotline_eval_callback_tasks_overdue",
                    "hotline_eval_callback_tasks_escalated", "hotline_eval_webhook_deliveries",
                    "hotline_eval_sms_reminders", "hotline_eval_last_rating_timestamp_seconds"}


def test_the_alert_rules_are_well_formed_and_name_only_metrics_that_exist() -> None:
    import re

    rules = yaml.safe_load((ROOT / "deploy" / "prometheus" / "alerts.yml").read_text(encoding="utf-8"))
    alerts = [rule for group in rules["groups"] for rule in group["rules"]]
    assert {"HotlineEvalNoRatingsStored", "HotlineEvalSpoolGrowing", "HotlineEvalOverdueNegativeRatings",
            "HotlineEvalDeadWebhooks", "HotlineEvalHeldWebhooks", "HotlineEvalProcessDown"} <= {
        rule["alert"] for rule in alerts}
    known = metric_names()
    for rule in alerts:
        assert set(rule) <= {"alert", "expr", "for", "labels", "annotations"} and rule["annotations"]["summary"]
        used = set(re.findall(r"hotline_eval_[a-z_]+", rule["expr"]))
        bare = {re.sub(r"_(total|count|sum|bucket)$", "", name) for name in used}
        assert bare <= known, rule["alert"]


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool (Debian: prometheus) is not installed")
def test_promtool_accepts_the_alert_rules() -> None:
    checked = subprocess.run(["promtool", "check", "rules", str(ROOT / "deploy" / "prometheus" / "alerts.yml")],
                             capture_output=True, text=True)
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_dashboard_names_only_metrics_that_exist() -> None:
    import json
    import re

    dashboard = json.loads((ROOT / "deploy" / "grafana" / "hotline-eval.json").read_text(encoding="utf-8"))
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert len(exprs) >= 10
    used = {re.sub(r"_(total|count|sum|bucket)$", "", name) for expr in exprs
            for name in re.findall(r"hotline_eval_[a-z_]+", expr)}
    assert used <= metric_names()
