"""Driving the web tool as a browser does, over Flask's test client: CSRF tokens and signing in."""

from __future__ import annotations

import re

from flask.testing import FlaskClient

TOKEN = re.compile(r'name="csrf_token" (?:type="hidden" )?value="([^"]+)"')


def token(page: bytes | str) -> str:
    """The CSRF token a page's forms carry."""
    found = TOKEN.search(page.decode() if isinstance(page, bytes) else page)
    assert found, "no CSRF token on the page"
    return found[1]


def csrf(client: FlaskClient, path: str) -> str:
    """The CSRF token of the page at ``path``."""
    return token(client.get(path).data)


def signed_in(site, username: str) -> FlaskClient:  # type: ignore[no-untyped-def]
    """A client signed in as one of the web_site fixture's users."""
    client = site.app.test_client()
    done = client.post("/login", data={"username": username, "password": site.password,
                                       "csrf_token": csrf(client, "/login")})
    assert done.status_code == 302, done.data.decode()[:500]
    return client
