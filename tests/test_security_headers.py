"""Security headers on every response, pages that keep to the strict CSP, recordings served as audio only, and
the 恶意评价名单 without a number in its forms (Flask's test client, SQLite and PostgreSQL)."""

from __future__ import annotations

import base64
import io
import json
import re
from collections.abc import Callable
from html.parser import HTMLParser
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy import select
from werkzeug.test import TestResponse

from rating_core.store.models import AuditEntry, BlockedNumber, CallbackTask
from web_pages import LINK_SECRET, csrf, signed_in, unrated_link

FIXED = {
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cross-Origin-Opener-Policy": "same-origin",
}
CSP_DIRECTIVES = ["default-src 'self'", "script-src 'self'", "style-src 'self'", "img-src 'self' data:",
                  "media-src 'self'", "object-src 'none'", "base-uri 'none'", "form-action 'self'",
                  "frame-ancestors 'none'"]


def assert_secured(response: TestResponse, *, cacheable: bool = False, citizen: bool = False) -> None:
    for name, value in FIXED.items():
        assert response.headers.get(name) == value, (name, response.headers)
    policy = [part.strip() for part in response.headers["Content-Security-Policy"].split(";")]
    assert sorted(policy) == sorted(CSP_DIRECTIVES)
    assert "unsafe-inline" not in response.headers["Content-Security-Policy"]
    assert "camera=()" in response.headers["Permissions-Policy"]
    assert "microphone=()" in response.headers["Permissions-Policy"]
    if citizen:
        assert response.headers["Cache-Control"] == "private, no-cache", response.headers
    elif not cacheable:
        assert response.headers["Cache-Control"] == "no-store", response.headers


def _reveal(site) -> TestResponse:
    client = signed_in(site, "agent")
    return client.post("/agent/tasks/1/reveal",
                       headers={"HX-Request": "true", "X-CSRFToken": csrf(client, "/agent/tasks/1")})


def _bad_csrf(site) -> TestResponse:
    return signed_in(site, "agent").post("/agent/tasks/1/claim", data={"csrf_token": "forged"})


def _citizen_page(site) -> TestResponse:
    return site.app.test_client().get(unrated_link(site)[1])


REQUESTS: dict[str, tuple[Callable[..., TestResponse], int]] = {
    "login page": (lambda site: site.app.test_client().get("/login"), 200),
    "signed-out redirect": (lambda site: site.app.test_client().get("/agent/"), 302),
    "404": (lambda site: site.app.test_client().get("/no/such/page"), 404),
    "405": (lambda site: site.app.test_client().get("/logout"), 405),
    "400 csrf": (_bad_csrf, 400),
    "403": (lambda site: signed_in(site, "unit").get("/agent/"), 403),
    "signed-in page": (lambda site: signed_in(site, "agent").get("/agent/tasks/1"), 200),
    "revealed number": (_reveal, 200),
    "recording": (lambda site: signed_in(site, "agent").get("/agent/tasks/1/voice"), 200),
    "xlsx download": (lambda site: signed_in(site, "boss").get("/supervisor/figures.xlsx"), 200),
    "api 401": (lambda site: site.app.test_client().get("/api/events"), 401),
    # Not configured in the fixture: refused as "not configured", with the headers still.
    "api inbound": (lambda site: site.app.test_client().post("/api/inbound", data=b"{}"), 503),
    "citizen page": (_citizen_page, 200),
}


@pytest.mark.parametrize("what", REQUESTS)
def test_every_kind_of_response_carries_the_security_headers(web_site, what: str) -> None:
    make, status = REQUESTS[what]
    response = make(web_site)
    assert response.status_code == status, response.data[:300]
    assert_secured(response, citizen=what == "citizen page")


def test_static_files_carry_the_headers_and_may_be_cached(web_site) -> None:
    for path in ("/static/site.css", "/static/vendor/htmx-2.0.11.min.js", "/static/no-such-file.js"):
        response = web_site.app.test_client().get(path)
        assert_secured(response, cacheable=True)
        assert "no-store" not in response.headers.get("Cache-Control", "")


def test_an_unhandled_error_is_a_chinese_500_page_with_the_headers_too(web_site) -> None:
    app = web_site.app

    @app.get("/__boom")
    def boom() -> str:
        raise RuntimeError("boom")

    app.config["PROPAGATE_EXCEPTIONS"] = False
    response = app.test_client().get("/__boom")
    assert response.status_code == 500 and "系统内部错误" in response.get_data(as_text=True)
    assert_secured(response)


def test_hsts_only_when_the_app_is_served_over_https(web_site) -> None:
    assert "Strict-Transport-Security" not in web_site.app.test_client().get("/login").headers
    web_site.app.config["SESSION_COOKIE_SECURE"] = True
    hsts = web_site.app.test_client().get("/login").headers["Strict-Transport-Security"]
    assert re.fullmatch(r"max-age=\d+", hsts) and int(hsts.split("=")[1]) >= 180 * 86400


# -- pages that keep to the CSP --------------------------------------------------------------------------------


class _InlineFinder(HTMLParser):
    """What the strict CSP refuses in a page: inline scripts, inline styles, event-handler attributes,
    ``javascript:`` URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script: dict[str, str | None] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        named = dict(attrs)
        if tag == "style":
            self.found.append("<style>")
        if tag == "script":
            self._in_script = named
        for name, value in attrs:
            if name.startswith("on"):
                self.found.append(f"<{tag} {name}=…>")
            if name == "style":
                self.found.append(f"<{tag} style=…>")
            if name.startswith("hx-on"):
                self.found.append(f"<{tag} {name}=…> (htmx eval)")
            if value and value.strip().lower().startswith(("javascript:", "js:")):
                self.found.append(f"<{tag} {name}={value[:30]}>")

    def handle_data(self, data: str) -> None:
        script = self._in_script
        if script is not None and not script.get("src") and script.get("type") != "application/json" and data.strip():
            self.found.append(f"inline <script>: {data.strip()[:40]}")

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = None


def inline_code(page: str) -> list[str]:
    finder = _InlineFinder()
    finder.feed(page)
    return finder.found


def test_the_finder_sees_what_the_csp_would_refuse() -> None:
    page = ('<p style="color:red" onclick="x()"><a href="javascript:x()">x</a></p><style>p{}</style>'
            '<script>alert(1)</script><script type="application/json">{"a": 1}</script><script src="/s.js"></script>')
    assert len(inline_code(page)) == 5


PAGES = {
    "agent": ["/agent/", "/agent/tasks/1", "/agent/tasks/1/report"],
    "boss": ["/agent/", "/agent/tasks/1", "/supervisor/figures", "/supervisor/figures?by=agent",
             "/supervisor/overdue", "/supervisor/appeals", "/supervisor/blocked", "/supervisor/batches",
             "/supervisor/quality"],
    "admin": ["/admin/audit", "/admin/users", "/admin/webhooks"],
    "unit": ["/unit/", "/unit/tasks/1"],
    None: ["/login", "/no/such/page"],
}


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)
def test_no_page_has_inline_script_or_style(web_site) -> None:
    """Every role's pages, with data in them: nothing that the CSP would refuse (the browser test runs them)."""
    boss = signed_in(web_site, "boss")
    boss.post("/supervisor/blocked", data={"number": "13912345678", "reason": "骚扰电话",
                                           "csrf_token": csrf(boss, "/supervisor/blocked")})
    offending: dict[str, list[str]] = {}
    for username, paths in PAGES.items():
        client = signed_in(web_site, username) if username else web_site.app.test_client()
        for path in paths:
            response = client.get(path)
            assert response.status_code in (200, 404), (username, path, response.status_code)
            found = inline_code(response.data.decode())
            if found:
                offending[f"{username} {path}"] = found
    citizen = web_site.app.test_client().get(unrated_link(web_site)[1]).data.decode()
    if inline_code(citizen):
        offending["/r/"] = inline_code(citizen)
    assert offending == {}


JINJA_COMMENT = re.compile(r"\{#.*?#\}", re.S)


def test_no_template_has_inline_script_or_style() -> None:
    """The templates themselves, so that a branch no test renders is covered as well."""
    templates = Path(__file__).resolve().parents[1] / "web" / "templates"
    offending = {path.name: inline_code(JINJA_COMMENT.sub("", path.read_text(encoding="utf-8")))
                 for path in templates.rglob("*.html")}
    assert {path: found for path, found in offending.items() if found} == {}


def test_htmx_neither_injects_a_style_nor_evaluates_code(web_site) -> None:
    page = signed_in(web_site, "agent").get("/agent/tasks/1").data.decode()
    config = re.search(r"""<meta name="htmx-config" content='([^']+)'>""", page)
    assert config is not None
    assert json.loads(config[1]) == {"includeIndicatorStyles": False, "allowEval": False, "allowScriptTags": False}
    assert ".htmx-indicator" in web_site.app.test_client().get("/static/site.css").data.decode()


# -- recordings: audio only ------------------------------------------------------------------------------------


def _voice_file(site, path: str) -> None:
    with site.store.sessions.begin() as session:
        session.get(CallbackTask, site.task_id).rating.voice_message_file = path


def test_an_html_file_in_a_recording_folder_is_not_served(web_site) -> None:
    evil = web_site.voice_file.with_name("evil.html")
    evil.write_text("<html><script>alert(document.cookie)</script></html>")
    _voice_file(web_site, str(evil))
    response = signed_in(web_site, "agent").get("/agent/tasks/1/voice")
    assert response.status_code == 404 and "text/html" in response.content_type  # our Chinese error page
    assert "录音文件格式不受支持" in response.data.decode() and b"alert(document.cookie)" not in response.data
    assert_secured(response)


def test_a_recording_is_always_served_as_audio_with_nosniff(web_site) -> None:
    """A ".wav" that holds HTML goes out as audio/wav, nosniff: the browser never renders it as a page."""
    disguised = web_site.voice_file.with_name("disguised.wav")
    disguised.write_text("<html><script>alert(document.cookie)</script></html>")
    _voice_file(web_site, str(disguised))
    response = signed_in(web_site, "agent").get("/agent/tasks/1/voice")
    assert response.status_code == 200
    assert response.mimetype == "audio/wav" and response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Content-Disposition"].startswith("inline; filename=")
    assert_secured(response)


def test_a_real_recording_still_plays_as_audio_wav(web_site) -> None:
    response = signed_in(web_site, "agent").get("/agent/tasks/1/voice")
    assert response.status_code == 200 and response.mimetype == "audio/wav"
    assert response.data[:4] == b"RIFF"
    upper = web_site.voice_file.with_name("1795316400.2.WAV")  # Asterisk's wav49 is named in capitals
    upper.write_bytes(web_site.voice_file.read_bytes())
    _voice_file(web_site, str(upper))
    response = signed_in(web_site, "agent").get("/agent/tasks/1/voice")
    assert response.status_code == 200 and response.mimetype == "audio/wav"


@pytest.mark.parametrize("engine", ["sqlite"], indirect=True)  # PostgreSQL text cannot hold a NUL at all
@pytest.mark.parametrize("junk", ["\0", "/evil\0.wav", "x" * 400 + ".wav", "../../../../etc/passwd",
                                  "relative.wav", "", "/"])
def test_junk_in_a_recording_path_is_a_404_not_a_500(web_site, junk: str) -> None:
    path = str(web_site.voice_file.parent) + "/" + junk if junk.startswith("/evil") else junk
    _voice_file(web_site, path)
    response = signed_in(web_site, "agent").get("/agent/tasks/1/voice")
    assert response.status_code == 404
    assert_secured(response)


@pytest.mark.parametrize("path", ["/agent/tasks/1%00/voice", "/agent/attempts/%00/recording",
                                  "/agent/attempts/1%00.html/recording", "/supervisor/quality/items/%00/recording",
                                  "/agent/tasks/-1/voice", "/agent/attempts/100000000000000000000000/recording",
                                  "/supervisor/quality/items/100000000000000000000000/recording",
                                  "/agent/tasks/%EF%BC%91/voice"])
def test_a_nul_or_junk_in_a_recording_url_is_a_4xx(web_site, path: str) -> None:
    client = signed_in(web_site, "boss")
    response = client.get(path)
    assert 400 <= response.status_code < 500
    assert_secured(response)


def test_an_evidence_file_is_an_attachment_never_a_page(web_site) -> None:
    """A text file of HTML, accepted as 证明材料 (TXT), downloads as text with nosniff; it never renders."""
    unit = signed_in(web_site, "unit")
    done = unit.post("/unit/tasks/1/appeal", content_type="multipart/form-data", data={
        "reason": "非本单位职责", "csrf_token": csrf(unit, "/unit/tasks/1"),
        "evidence": (io.BytesIO(b"<html><script>alert(document.cookie)</script></html>\n"), "evil.txt")})
    assert done.status_code in (302, 403, 415), done.data[:300]
    if done.status_code != 302:  # refused outright: nothing to serve
        return
    page = unit.get("/unit/tasks/1").data.decode()
    link = re.search(r'href="(/unit/appeals/\d+/evidence/\d+)"', page)
    assert link is not None
    response = unit.get(link[1])
    assert response.status_code == 200 and response.mimetype != "text/html"
    assert response.headers["Content-Disposition"].startswith("attachment;")
    assert_secured(response)


# -- the 恶意评价名单: no number in its forms -------------------------------------------------------------------


def _encodings(number: str) -> list[str]:
    """Every form the number could travel in: as it is, JSON-quoted, base64 and base64url, padded or not."""
    found = [number]
    for raw in (number.encode(), json.dumps(number).encode()):
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            text = encode(raw).decode()
            found += [text, text.rstrip("=")]
    return found


def test_the_list_page_and_its_forms_carry_no_number(web_site) -> None:
    boss = signed_in(web_site, "boss")
    boss.post("/supervisor/blocked", data={"number": "13900000002", "reason": "骚扰电话",
                                           "csrf_token": csrf(boss, "/supervisor/blocked")})
    page = boss.get("/supervisor/blocked").data.decode()
    assert "139****0002" in page
    leaked = [form for form in _encodings("13900000002") if form in page]
    assert leaked == []
    # Nor can the old, merely signed token be decoded from anything in the page.
    values = re.findall(r'name="token" value="([^"]+)"', page)
    assert len(values) == 1
    with pytest.raises(BadSignature):
        URLSafeSerializer(LINK_SECRET, salt="blocked-number").loads(values[0])


def test_removal_by_the_entrys_id_works_and_is_audited(web_site) -> None:
    boss = signed_in(web_site, "boss")
    for number in ("13900000002", "13900000003"):
        boss.post("/supervisor/blocked", data={"number": number, "reason": "骚扰电话",
                                               "csrf_token": csrf(boss, "/supervisor/blocked")})
    page = boss.get("/supervisor/blocked").data.decode()
    rows = re.findall(r'<td>(139\*\*\*\*\d{4})</td>.*?name="token" value="([^"]+)"', page, re.S)
    entry = dict(rows)["139****0003"]
    done = boss.post("/supervisor/blocked/remove", follow_redirects=True,
                     data={"token": entry, "csrf_token": csrf(boss, "/supervisor/blocked")})
    assert done.status_code == 200 and "已移出恶意评价名单" in done.data.decode()
    with web_site.store.sessions() as session:
        assert session.scalars(select(BlockedNumber.number)).all() == ["13900000002"]
        audited = session.scalars(select(AuditEntry).where(AuditEntry.action == "number_unblocked")).one()
        assert (audited.username, audited.target) == ("boss", "number:139****0003")
    again = boss.post("/supervisor/blocked/remove",
                      data={"token": entry, "csrf_token": csrf(boss, "/supervisor/blocked")})
    assert again.status_code == 400 and "名单中没有这条记录" in again.data.decode()


@pytest.mark.parametrize("forged", ["13900000002", "", "0" * 32, "g" * 32, "x" * 10_000, "\0",
                                    "IjEzOTAwMDAwMDAyIg.signature"])
def test_a_forged_or_stale_id_removes_nothing(web_site, forged: str) -> None:
    boss = signed_in(web_site, "boss")
    boss.post("/supervisor/blocked", data={"number": "13900000002", "reason": "骚扰电话",
                                           "csrf_token": csrf(boss, "/supervisor/blocked")})
    response = boss.post("/supervisor/blocked/remove",
                         data={"token": forged, "csrf_token": csrf(boss, "/supervisor/blocked")})
    assert response.status_code == 400
    assert "无效的号码标识" in response.data.decode() or "\0" in forged  # a NUL is refused before the view
    with web_site.store.sessions() as session:
        assert session.scalars(select(BlockedNumber.number)).all() == ["13900000002"]


def test_an_id_from_before_a_key_rotation_removes_nothing(web_site) -> None:
    boss: FlaskClient = signed_in(web_site, "boss")
    boss.post("/supervisor/blocked", data={"number": "13900000002", "reason": "骚扰电话",
                                           "csrf_token": csrf(boss, "/supervisor/blocked")})
    entry = re.search(r'name="token" value="([^"]+)"', boss.get("/supervisor/blocked").data.decode())[1]
    web_site.app.config["SECRET_KEY"] = "a-rotated-secret-key-of-enough-length"
    boss = signed_in(web_site, "boss")
    response = boss.post("/supervisor/blocked/remove",
                         data={"token": entry, "csrf_token": csrf(boss, "/supervisor/blocked")})
    assert response.status_code == 400
