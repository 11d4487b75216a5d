"""Events per second from the outbox to a loopback webhook receiver: our delivery pass against a naive sender.

Run: ``.venv/bin/python benchmarks/webhook_throughput.py [--events 3000]``

The store (a fresh SQLite file for each sender) holds ``--events`` outbox events,
one per rating, and one endpoint subscribed to all. The receiver is a threaded
HTTP server on 127.0.0.1 answering 200. Both senders sign every request the
same way (Standard Webhooks) and record every delivery in the store:

- baseline: one event at a time, a new connection per request (``httpx.post``),
  one transaction per event;
- ours: ``deliver_pass`` (keep-alive connections, up to 8 requests in flight,
  the order per rating kept).

Each is timed on its own copy of the backlog, in the same run; the figure is
the ratio of events per second.
"""

from __future__ import annotations

import argparse
import random
import tempfile
import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
from sqlalchemy import insert, select, update

from delivery.webhooks import deliver_pass, fan_out, signature
from rating_core.outbox.bodies import Body
from rating_core.outbox.webhook_endpoints import new_secret
from rating_core.store.database import make_engine, make_session_factory
from rating_core.store.migrate import upgrade
from rating_core.store.models import OutboxEvent, WebhookDelivery, WebhookEndpoint


class Ok(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive for clients that want it
    count = 0

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers["content-length"]))
        self.send_response(200)
        self.send_header("content-length", "0")
        self.end_headers()
        Ok.count += 1

    def log_message(self, *args: object) -> None:
        pass


def backlog(url: str, events: int, receiver: str):
    engine = make_engine(url)
    upgrade(engine)
    sessions = make_session_factory(engine)
    now = datetime.now(timezone.utc) - timedelta(seconds=1)
    with sessions.begin() as session:
        session.add(WebhookEndpoint(url=receiver, secret=new_secret(), event_types=["*"], active=True, created_at=now))
        session.execute(insert(OutboxEvent), [
            {"event_id": f"evt_{n:032x}", "type": "rating.created", "rating_id": n, "created_at": now,
             "fanned_out": False, "payload": {"schema_version": "1.0", "id": f"evt_{n:032x}", "type": "rating.created",
                                              "rating": {"call_uniqueid": f"1795316400.{n}", "level": "satisfied"},
                                              "complaint": None, "data": {}}}
            for n in range(1, events + 1)])
        fan_out(session)
    return engine, sessions


def naive(sessions) -> None:
    while True:
        with sessions.begin() as session:
            delivery = session.scalars(select(WebhookDelivery).where(WebhookDelivery.status == "pending")
                                       .order_by(WebhookDelivery.event_id).limit(1)).first()
            if delivery is None:
                return
            endpoint, event = delivery.endpoint, delivery.event
            now = datetime.now(timezone.utc)
            body = Body.of(event.payload, sort_keys=True).text
            headers = {"content-type": "application/json", "webhook-id": event.event_id,
                       "webhook-timestamp": str(int(now.timestamp())),
                       "webhook-signature": signature(endpoint, event.event_id, now, body)}
            response = httpx.post(endpoint.url, content=body.encode(), headers=headers, timeout=10)
            if response.status_code == 200:
                session.execute(update(WebhookDelivery).where(WebhookDelivery.id == delivery.id)
                                .values(status="delivered", delivered_at=now, attempts=1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=3000)
    args = parser.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", 0), Ok)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    receiver = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    with tempfile.TemporaryDirectory() as tmp:
        figures = {}
        for name in ("naive", "ours"):
            engine, sessions = backlog(f"sqlite:///{tmp}/{name}.db", args.events, receiver)
            before = Ok.count
            start = time.perf_counter()
            if name == "naive":
                naive(sessions)
            else:
                with httpx.Client() as client:
                    deliver_pass(sessions, client, rng=random.Random(1))
            seconds = time.perf_counter() - start
            assert Ok.count - before == args.events, "every event must arrive"
            figures[name] = args.events / seconds
            engine.dispose()
    server.shutdown()
    print(f"{args.events:,} events to a loopback receiver: naive {figures['naive']:,.0f}/s, "
          f"ours {figures['ours']:,.0f}/s → ×{figures['ours'] / figures['naive']:.1f} the baseline")


if __name__ == "__main__":
    main()
