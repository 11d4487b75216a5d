"""An SMS gateway over real HTTP, for the demo and the tests: it takes requests as the rules' template
sends them, answers in the common JSON shape (``{"code": "OK", "biz_id": …}``), and keeps the messages
that would have reached a phone.

Its behaviour can be scripted per request, to play the failures a real gateway
has: ``ok``; ``error500`` (not accepted); ``slow`` (accepted and sent, but the
answer comes after ``slow_seconds``, so the client times out); ``garbage`` (a
2xx whose body is not JSON); ``refuse`` (a failure code); ``bad_request`` (400).
With ``deduplicates`` it sends a request id once, however often it is asked,
as gateways with an ``out_id`` do.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

BEHAVIOURS = ("ok", "error500", "slow", "garbage", "refuse", "bad_request")


class SimulatedSmsGateway:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, token: str | None = None,
                 deduplicates: bool = False, slow_seconds: float = 2.0, request_id_field: str = "out_id",
                 number_field: str = "phone") -> None:
        self.token = token
        self.deduplicates = deduplicates
        self.slow_seconds = slow_seconds
        self.request_id_field = request_id_field
        self.number_field = number_field
        self.script: list[str] = []  # behaviours for the next requests, in order; then "ok"
        self.requests: list[dict[str, Any]] = []
        self.delivered: list[dict[str, Any]] = []
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer((host, port), self._handler())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, name="sms-gateway", daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}/sms/send"

    def __enter__(self) -> SimulatedSmsGateway:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def delivered_to(self, number: str) -> list[str]:
        """The texts that reached ``number``."""
        with self._lock:
            return [message.get("content", "") for message in self.delivered
                    if message.get(self.number_field) == number]

    def _take(self, body: dict[str, Any]) -> tuple[str, bool]:
        """Record one request; which behaviour answers it, and whether it makes a new SMS."""
        with self._lock:
            self.requests.append(body)
            behaviour = self.script.pop(0) if self.script else "ok"
            if behaviour not in ("ok", "slow", "garbage"):
                return behaviour, False
            request_id = body.get(self.request_id_field)
            seen = any(m.get(self.request_id_field) == request_id for m in self.delivered)
            if self.deduplicates and request_id is not None and seen:
                return behaviour, False
            self.delivered.append(body)
            return behaviour, True

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:  # quiet: the tests read the records
                return

            def do_POST(self) -> None:
                if gateway.token and self.headers.get("Authorization") != f"Bearer {gateway.token}":
                    self._answer(401, {"code": "Unauthorized", "message": "bad token"})
                    return
                try:
                    body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)))
                except ValueError:
                    self._answer(400, {"code": "BadRequest", "message": "body is not JSON"})
                    return
                behaviour, _new = gateway._take(body)
                if behaviour == "slow":
                    time.sleep(gateway.slow_seconds)
                if behaviour in ("ok", "slow"):
                    self._answer(200, {"code": "OK", "biz_id": f"biz-{len(gateway.requests)}"})
                elif behaviour == "error500":
                    self._answer(500, {"code": "InternalError"})
                elif behaviour == "garbage":
                    self._raw(200, b"<html>upstream reset</html>")
                elif behaviour == "refuse":
                    self._answer(200, {"code": "isv.MOBILE_NUMBER_ILLEGAL", "message": "号码格式错误"})
                else:
                    self._answer(400, {"code": "BadRequest"})

            def _answer(self, status: int, document: dict[str, Any]) -> None:
                self._raw(status, json.dumps(document, ensure_ascii=False).encode())

            def _raw(self, status: int, body: bytes) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json; charset=utf-8")
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):  # the client gave up (a "slow" answer)
                    pass

        return Handler
