"""Driving the web tool as a browser does, over Flask's test client: CSRF tokens, signing in, 补充评价 links."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

from flask.testing import FlaskClient
from sqlalchemy import select

from rating_core.events.call_events import CallEnded, CallStarted
from rating_core.ratings.supplementary import link_token
from rating_core.store.models import Call, SmsReminder

LINK_SECRET = "test-secret"  # the web_site fixture's SECRET_KEY, which the SMS sender signs links with too
TOKEN = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def token(page: bytes | str) -> str:
    """The CSRF token a page's forms carry."""
    found = TOKEN.search(page.decode() if isinstance(page, bytes) else page)
    assert found, "no CSRF token on the page"
    return found[1]


VERSION = re.compile(r'name="version" value="(\d+)"')


def form_keys(page: bytes | str) -> dict[str, str]:
    """What a task form sends besides its fields: the CSRF token and the version of the task it was made from."""
    text = page.decode() if isinstance(page, bytes) else page
    found = VERSION.search(text)
    assert found, "no task version on the page"
    return {"csrf_token": token(text), "version": found[1]}


def csrf(client: FlaskClient, path: str) -> str:
    """The CSRF token of the page at ``path``."""
    return token(client.get(path).data)


def signed_in(site, username: str) -> FlaskClient:
    """A client signed in as one of the web_site fixture's users."""
    client = site.app.test_client()
    done = client.post("/login", data={"username": username, "password": site.password,
                                       "csrf_token": csrf(client, "/login")})
    assert done.status_code == 302, done.data.decode()[:500]
    return client


def unrated_link(site, number: str = "13812349999", *, sent: bool = True) -> tuple[str, str]:
    """An unrated call of an hour ago whose reminder went out; its uniqueid and link path."""
    uid = f"1795700000.{number[-4:]}"
    at = datetime.now(timezone.utc) - timedelta(hours=1)
    site.store.apply([CallStarted(uniqueid=uid, hotline="12345", at=at, caller_number=number, agent_id="1024"),
                      CallEnded(uid, "no_input", at + timedelta(seconds=40))])
    with site.store.sessions.begin() as session:
        reminder = session.scalars(select(SmsReminder).join(Call).where(Call.uniqueid == uid)).one()
        if sent:
            reminder.status = "sent"
        return uid, f"/r/{link_token(reminder.code, LINK_SECRET)}"
