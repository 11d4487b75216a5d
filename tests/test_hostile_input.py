"""Every route, for every role, with hostile input in each path variable, query parameter and form field, and
a deep JSON body: nothing answers 5xx, a refused page says why in Chinese and a refused API call in JSON.

The routes come from the app's own URL map and the parameters from the views' own source, so a new route or
a new parameter is swept without this file changing. SQLite gets every value; PostgreSQL (slower per request)
a smaller set that still holds each kind: out-of-range and Unicode numbers, control characters, overlong text.
"""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import quote

import pytest
from flask.testing import FlaskClient
from standardwebhooks.webhooks import Webhook
from werkzeug.routing import Rule

from rating_core.outbox.webhook_endpoints import new_secret
from web_pages import signed_in

ROLES = {"agent": "agent", "supervisor": "boss", "admin": "admin", "unit": "unit", "anonymous": None}
PULL_TOKEN = "sweep-pull-token"

# ASCII: 100 KB of percent-encoded 汉字 takes the test client's URL decoding most of a second per request.
OVERLONG = "x" * 100_000
# Each kind of input the security review sent, as the value of a path variable, a query parameter or a field.
HOSTILE = {
    "zero": "0",
    "negative": "-1",
    "huge": str(10**23),
    "past 32 bits": "2147483648",
    "past 64 bits": str(2**64),
    "superscript two": "²",
    "arabic-indic three": "٣",
    "superscript exponent": "10²⁰",
    "NUL": "a\x00b",
    "CRLF": "x\r\nSet-Cookie: evil=1",
    "dot-dot": "../../../etc/passwd",
    "percent": "%",
    "emoji": "😀",
    "year one": "0001-01",
    "first day": "0001-01-01",
    "last day": "9999-12-31",
    "to year 9999": "2026-01-01..9999-12-31",
    "period newline": "2026Q4\nX: y",
    "overlong": OVERLONG,
}
# Each parameter alone gets the kinds a check could miss (the rest are refused alike by any check); the slower
# database gets what only it refuses: numbers past its integers, NUL, text past a column's size.
ONE_BY_ONE = ("huge", "past 32 bits", "superscript exponent", "arabic-indic three", "NUL", "CRLF", "year one",
              "first day", "last day", "to year 9999", "overlong")
POSTGRES_KINDS = ("past 32 bits", "NUL", "last day", "overlong")
POSTGRES_ONE_BY_ONE = ("past 32 bits", "NUL", "overlong")
DEEP_JSON = "[" * 10_000 + "]" * 10_000
JSON_BODIES = {"deep JSON body": DEEP_JSON, "JSON list body": '[1, ["a"]]', "JSON string body": '"x"'}

# Parameters read outside the views' own `.get("…")` calls (the figures picker reads them in a loop).
COMMON_PARAMETERS = {"period", "kind", "year", "quarter", "month", "from", "to", "by", "scheme", "hotline", "q",
                     "page", "state", "scope", "since", "until", "assigned", "escalated", "overdue", "cursor",
                     "limit", "next", "token", "version", "agent", "verify_by", "reason", "points", "name"}
_READ = re.compile(r"""\.get(?:list)?\(\s*["']([A-Za-z_][A-Za-z0-9_]*)["']""")
_FIELD = re.compile(r"^\s+([a-z_]+) = \w+Field\(", re.M)
_CJK = re.compile(r"[\u4e00-\u9fff]")
_CSRF = re.compile(r'"X-CSRFToken": "([^"]+)"|name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


@dataclass
class Sweep:
    """The requests made and every answer that is a 5xx (or a 4xx not in Chinese / not JSON)."""

    requests: int = 0
    failures: list[str] = field(default_factory=list)

    def send(self, who: str, client: FlaskClient, method: str, path: str, what: str, **kwargs: Any) -> None:
        """One request, its whole body read (``buffered``) as a browser would; then :meth:`check`."""
        try:
            response = client.open(path, method=method, buffered=True, **kwargs)
        except Exception as exc:  # a streamed body (the audit CSV) that fails after its 200 went out
            self.requests += 1
            where = f"{who:10} {method:4} {path[:120]!r} [{what}]"
            self.failures.append(f"broken stream ({type(exc).__name__}: {str(exc)[:80]}) {where}")
            return
        self.check(who, method, path + ("?" if kwargs.get("query_string") else ""), what, response)

    def check(self, who: str, method: str, url: str, what: str, response: Any) -> None:
        self.requests += 1
        where = f"{who:10} {method:4} {url[:120]!r} [{what}]"
        status = response.status_code
        if status >= 500:
            self.failures.append(f"{status} {where}")
        elif 400 <= status < 500 and status not in (401,):
            self.check_words(where, url, response)

    def check_words(self, where: str, url: str, response: Any) -> None:
        if url.startswith("/api/"):
            if not (response.is_json and isinstance(response.json, dict) and "error" in response.json):
                self.failures.append(f"{response.status_code} not JSON: {where}")
            elif not _CJK.search(str(response.json["error"])):
                self.failures.append(f"{response.status_code} error not in Chinese: {where}")
        elif response.mimetype == "text/html" and not _CJK.search(response.get_data(as_text=True)):
            self.failures.append(f"{response.status_code} page not in Chinese: {where}")


def parameters(rule: Rule, app: Any, method: str) -> list[str]:
    """The query parameters (and, for a POST, the form fields) the route's module reads."""
    view = inspect.unwrap(app.view_functions[rule.endpoint])
    try:
        source = inspect.getsource(sys.modules[view.__module__])
    except (OSError, TypeError):
        source = ""
    # Read by name (`.get("q")`), or through a helper that is handed the name (`day("since")`).
    names = set(_READ.findall(source)) | {name for name in COMMON_PARAMETERS if f'"{name}"' in source}
    if method == "POST":
        names |= set(_FIELD.findall(inspect.getsource(sys.modules["web.forms"])))
    return sorted(names)


def url(rule: Rule, values: dict[str, str]) -> str:
    """The rule's path with each variable replaced by its value, percent-encoded as a browser would."""
    path = rule.rule
    for name in rule.arguments:
        path = re.sub(rf"<(?:[^:<>]+:)?{name}>", quote(values[name], safe=""), path)
    return path


def csrf_token(client: FlaskClient, username: str | None) -> str:
    landing = {"agent": "/agent/", "boss": "/agent/", "admin": "/admin/users", "unit": "/unit/"}
    page = client.get(landing.get(username or "", "/login")).get_data(as_text=True)
    found = _CSRF.search(page)
    assert found, f"no CSRF token for {username}"
    return found[1] or found[2]


def signed(secret: str, body: str) -> dict[str, str]:
    webhook_id = f"sweep_{datetime.now(timezone.utc).timestamp()}"
    at = datetime.now(timezone.utc)
    return {"webhook-id": webhook_id, "webhook-timestamp": str(int(at.timestamp())),
            "webhook-signature": Webhook(secret).sign(webhook_id, at, body)}


def requests_for(rule: Rule, params: list[str], values: dict[str, str], admitted: bool,
                 one_by_one: tuple[str, ...]) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(url, what, fields) for one route and role.

    A role the route refuses is refused before the view reads anything: each hostile value everywhere at once.
    A role it admits: each value in each path variable, and in every parameter at once; the kinds
    ``one_by_one`` also in each parameter alone (an earlier parameter's refusal hides no later one).
    """
    base = {name: "1" for name in rule.arguments}
    everything = sorted(COMMON_PARAMETERS | set(params))
    for kind, value in values.items():
        # Overlong text shared out among every parameter at once: 100 KB in all (4 MB of them is only slow).
        shared = value[: len(OVERLONG) // len(everything)] if value == OVERLONG else value
        if not admitted:
            yield url(rule, dict.fromkeys(rule.arguments, value)), f"everything={kind}", dict.fromkeys(everything,
                                                                                                      shared)
            continue
        for name in rule.arguments:
            yield url(rule, base | {name: value}), f"{name}={kind}", {}
        yield url(rule, base), f"all parameters={kind}", dict.fromkeys(everything, shared)
        if kind in one_by_one:
            for name in params:
                yield url(rule, base), f"{name}={kind}", {name: value}


def sweep_routes(site: Any, values: dict[str, str], one_by_one: tuple[str, ...]) -> Sweep:
    app = site.app
    app.config["PROPAGATE_EXCEPTIONS"] = False  # an unhandled exception is a 500 here, as in production
    secret = new_secret()
    app.config.update(INBOUND_SECRETS=(secret,), PULL_TOKENS=(PULL_TOKEN,))
    clients = {role: (signed_in(site, user) if user else app.test_client()) for role, user in ROLES.items()}
    tokens = {role: csrf_token(clients[role], ROLES[role]) for role in ROLES}
    # Signing out (and signing in) last: they change the client's session.
    rules = sorted(app.url_map.iter_rules(), key=lambda r: (r.endpoint in ("auth.logout", "auth.login"), r.rule))
    result = Sweep()
    for rule in rules:
        for method in sorted((rule.methods or set()) - {"HEAD", "OPTIONS"}):
            params = parameters(rule, app, method)
            swept_one_by_one = False
            for role, client in clients.items():
                headers = {"X-CSRFToken": tokens[role], "Authorization": f"Bearer {PULL_TOKEN}"}
                plain = client.open(url(rule, {name: "1" for name in rule.arguments}), method=method,
                                    headers=headers, data={"csrf_token": tokens[role]}, buffered=True)
                plain.close()
                admitted = plain.status_code not in (302, 401, 403)
                # Each parameter alone for the first role the route lets in.
                alone = one_by_one if admitted and not swept_one_by_one else ()
                swept_one_by_one |= admitted
                for path, what, fields in requests_for(rule, params, values, admitted, alone):
                    if method == "GET":
                        result.send(role, client, method, path, what, query_string=fields, headers=headers)
                    else:
                        result.send(role, client, method, path, what, headers=headers,
                                    data=fields | {"csrf_token": tokens[role]})
                for what, body in JSON_BODIES.items() if method == "POST" else ():
                    result.send(role, client, method, url(rule, {name: "1" for name in rule.arguments}), what,
                                data=body, content_type="application/json", headers=headers | signed(secret, body))
    return result


def test_no_route_answers_5xx_to_hostile_input(web_site, engine) -> None:
    if engine.dialect.name == "sqlite":
        result = sweep_routes(web_site, HOSTILE, ONE_BY_ONE)
    else:
        result = sweep_routes(web_site, {kind: HOSTILE[kind] for kind in POSTGRES_KINDS}, POSTGRES_ONE_BY_ONE)
    assert result.requests > 1000
    assert not result.failures, f"{len(result.failures)} of {result.requests} requests:\n" + "\n".join(
        result.failures[:200])
    print(f"{result.requests} requests")


def test_the_sweep_reports_a_500_with_its_route_and_input(web_site) -> None:
    """The sweep itself: an unhandled exception is seen as a 500 (not raised into the test) and named."""
    app = web_site.app

    @app.get("/agent/broken/<int:n>")
    def broken(n: int) -> str:
        return str(1 // (n - 1))

    app.config["PROPAGATE_EXCEPTIONS"] = False
    sweep = Sweep()
    sweep.check("anonymous", "GET", "/agent/broken/1", "n=1", app.test_client().get("/agent/broken/1"))
    assert sweep.failures == ["500 anonymous  GET  '/agent/broken/1' [n=1]"]


# -- each 500 the security review found, by itself ------------------------------------------------------------


@pytest.mark.parametrize("task_id", [str(10**23), "2147483648", "99999999999", "0", "٣", "²"])
def test_an_id_beyond_any_record_is_a_chinese_404(web_site, task_id: str) -> None:
    response = signed_in(web_site, "agent").get(f"/agent/tasks/{quote(task_id)}")
    assert response.status_code == 404 and "页面或记录不存在" in response.get_data(as_text=True)


def test_the_largest_id_a_column_holds_is_looked_up(web_site) -> None:
    assert signed_in(web_site, "agent").get(f"/agent/tasks/{2**31 - 1}").status_code == 404
    assert signed_in(web_site, "agent").get("/agent/tasks/0001").status_code == 200  # task 1, as before


@pytest.mark.parametrize("path", ["/supervisor/figures", "/supervisor/figures.xlsx"])
@pytest.mark.parametrize("period", ["0001-01", "0001Q1", "2026-01-01..9999-12-31", "9999-12-30..9999-12-31",
                                    "0001-01-01..0001-01-02"])
def test_a_period_at_the_calendars_edge_is_a_chinese_400(web_site, path: str, period: str) -> None:
    response = signed_in(web_site, "boss").get(path, query_string={"period": period})
    assert response.status_code == 400
    assert "年至" in response.get_data(as_text=True) or "超过一年" in response.get_data(as_text=True)


@pytest.mark.parametrize("period", ["2026Q4\r\nX-Evil: 1", "2026Q4\n", "\n2026Q4", "2026Q4\u2028"])
def test_a_newline_in_the_period_never_reaches_the_download_header(web_site, period: str) -> None:
    response = signed_in(web_site, "boss").get("/supervisor/figures.xlsx", query_string={"period": period})
    assert response.status_code in (200, 400)
    assert "X-Evil" not in response.headers
    assert not any(ch in value for _name, value in response.headers.items() for ch in "\r\n")


@pytest.mark.parametrize("days", [{"since": "0001-01-01"}, {"until": "9999-12-31"}, {"q": "²"}, {"q": "#٣"},
                                  {"page": "²"}, {"page": str(10**23)}])
def test_a_queue_filter_at_any_edge_is_answered(web_site, days: dict[str, str]) -> None:
    response = signed_in(web_site, "boss").get("/agent/", query_string=days)
    assert response.status_code in (200, 400)
    if response.status_code == 400:
        assert _CJK.search(response.get_data(as_text=True))


def test_a_deadline_past_the_calendar_is_refused_in_chinese(web_site) -> None:
    client = signed_in(web_site, "boss")
    token = csrf_token(client, "boss")
    response = client.post("/supervisor/overdue/1/extend", data={"csrf_token": token, "verify_by": "9999-12-31",
                                                                 "reason": "市民外出"})
    assert response.status_code == 400 and "核实期限" in response.get_data(as_text=True)


def test_nul_in_a_query_is_a_chinese_400_on_either_database(web_site) -> None:
    """PostgreSQL's text refuses NUL: any view that looked it up would fail there."""
    response = signed_in(web_site, "boss").get("/agent/", query_string={"q": "1380\x00"})
    assert response.status_code == 400 and "空字符" in response.get_data(as_text=True)
    response = signed_in(web_site, "boss").post("/agent/tasks/1/verdict", data={"note": "a\x00b"})
    assert response.status_code == 400


@pytest.mark.parametrize("body", [DEEP_JSON, "[1, 2]", '"x"'])
def test_a_json_body_to_a_page_is_a_chinese_415(web_site, body: str) -> None:
    client = signed_in(web_site, "agent")
    response = client.post("/agent/tasks/1/verdict", data=body, content_type="application/json",
                           headers={"X-CSRFToken": csrf_token(client, "agent")})
    assert response.status_code == 415 and "表单" in response.get_data(as_text=True)
