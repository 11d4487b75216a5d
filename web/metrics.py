"""``/metrics`` for Prometheus, ``/healthz`` and ``/readyz`` for whoever restarts or routes to the web tool.

What the database knows (callback tasks by state, overdue and escalated 差评, webhook deliveries, SMS by
status, when the last rating was given) is read here, once per scrape, by one collector: the one place that
reads the store for metrics, however many processes write it. The other processes count only what happens
in them (rating_core/rules/metrics.py).

``/metrics`` is never public: the numbers of 差评 and overdue tasks are the centre's business. It answers a
bearer token (``HOTLINE_EVAL_METRICS_TOKEN``) or a client at an address of ``HOTLINE_EVAL_METRICS_FROM``;
with neither set, nobody. ``/healthz`` says only that the process answers; ``/readyz`` asks the database
and Redis, and says which of them failed without any detail a stranger could use.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from datetime import datetime, timezone
from ipaddress import IPv4Network, IPv6Network, ip_address
from typing import Any

from flask import Blueprint, Flask, Response, abort, current_app, jsonify, request
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector
from redis import Redis
from sqlalchemy import func, select, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from rating_core.complaints.callback_tasks import OPEN_STATES
from rating_core.ratings.store import RatingStore
from rating_core.store.models import CallbackTask, Rating, SmsReminder, WebhookDelivery
from web.api import machine_auth

bp = Blueprint("metrics", __name__)

# How long /readyz waits for each of the database and Redis: a probe must answer before its caller gives up.
PROBE_TIMEOUT = 2.0


class StoreCollector(Collector):
    """Gauges read from the database on each scrape; ``hotline_eval_database_up`` 0 when it cannot be read."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions

    def collect(self) -> Iterator[GaugeMetricFamily]:
        up = GaugeMetricFamily("hotline_eval_database_up", "1 when the web tool could read the store for this scrape.")
        try:
            families = self._read(datetime.now(timezone.utc))
        except SQLAlchemyError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _read(self, now: datetime) -> list[GaugeMetricFamily]:
        tasks = GaugeMetricFamily("hotline_eval_callback_tasks", "Callback tasks (差评) by hotline and state.",
                                  labels=["hotline", "state"])
        overdue = GaugeMetricFamily("hotline_eval_callback_tasks_overdue",
                                    "Open callback tasks past their verification deadline.", labels=["hotline"])
        escalated = GaugeMetricFamily("hotline_eval_callback_tasks_escalated",
                                      "Open callback tasks escalated to a supervisor.", labels=["hotline"])
        deliveries = GaugeMetricFamily("hotline_eval_webhook_deliveries",
                                       "Webhook deliveries by status (pending, held, dead, …).", labels=["status"])
        sms = GaugeMetricFamily("hotline_eval_sms_reminders", "补充评价 SMS by status.", labels=["status"])
        last = GaugeMetricFamily("hotline_eval_last_rating_timestamp_seconds",
                                 "When the newest rating a caller gave in a call (keys or speech) was given.")
        is_open = CallbackTask.state.in_(OPEN_STATES)
        with self.sessions() as session:
            for hotline, state, count in session.execute(
                    select(CallbackTask.hotline, CallbackTask.state, func.count())
                    .group_by(CallbackTask.hotline, CallbackTask.state)):
                tasks.add_metric([hotline, state], count)
            for hotline, count in session.execute(
                    select(CallbackTask.hotline, func.count()).where(is_open, CallbackTask.verify_by <= now)
                    .group_by(CallbackTask.hotline)):
                overdue.add_metric([hotline], count)
            for hotline, count in session.execute(
                    select(CallbackTask.hotline, func.count()).where(is_open, CallbackTask.escalated_at.is_not(None))
                    .group_by(CallbackTask.hotline)):
                escalated.add_metric([hotline], count)
            for status, count in session.execute(
                    select(WebhookDelivery.status, func.count()).group_by(WebhookDelivery.status)):
                deliveries.add_metric([status], count)
            for status, count in session.execute(select(SmsReminder.status, func.count()).group_by(SmsReminder.status)):
                sms.add_metric([status], count)
            newest = session.scalar(select(func.max(Rating.rated_at)).where(Rating.channel.in_(("dtmf", "speech"))))
        if newest is not None:
            last.add_metric([], (newest if newest.tzinfo else newest.replace(tzinfo=timezone.utc)).timestamp())
        return [tasks, overdue, escalated, deliveries, sms, last]


def register(app: Flask, store: RatingStore) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(StoreCollector(store.sessions))
    app.extensions["hotline_metrics_registry"] = registry
    app.register_blueprint(bp)


def _allowed(token: str | None, networks: tuple[IPv4Network | IPv6Network, ...]) -> bool:
    given = request.headers.get("Authorization", "")
    if token and given.startswith("Bearer ") and hmac.compare_digest(given[7:].encode(), token.encode()):
        return True
    try:
        client = ip_address(request.remote_addr or "")
    except ValueError:
        return False
    return any(client in network for network in networks)


@bp.get("/metrics")
@machine_auth("bearer-token or address")
def metrics() -> Response:
    if not _allowed(current_app.config.get("METRICS_TOKEN"), current_app.config.get("METRICS_FROM", ())):
        abort(403)
    # This process's own series (the default registry), then what the store says.
    body = generate_latest(REGISTRY) + generate_latest(current_app.extensions["hotline_metrics_registry"])
    return Response(body, content_type=CONTENT_TYPE_LATEST, headers={"Cache-Control": "no-store"})


@bp.get("/healthz")
def healthz() -> Any:
    return jsonify({"status": "ok"})


@bp.get("/readyz")
def readyz() -> Any:
    store: RatingStore = current_app.extensions["hotline_store"]
    failed = []
    try:
        with store.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
    except SQLAlchemyError:
        failed.append("database")
    url = current_app.config.get("READINESS_REDIS_URL")
    if url:
        try:
            Redis.from_url(url, socket_timeout=PROBE_TIMEOUT, socket_connect_timeout=PROBE_TIMEOUT).ping()
        except Exception:  # refused, timed out, a bad password: not ready, whichever
            failed.append("redis")
    if failed:
        return jsonify({"status": "unavailable", "failed": failed}), 503
    return jsonify({"status": "ok"})
