"""The demo's 补充评价 step: callers who did not rate get one SMS, and one of them rates by its link.

The SMS go through the real sender to a simulated gateway over HTTP; the
citizen's page is the web tool's own, driven in-process with its CSRF token,
so the rating lands exactly as a phone's would. The links printed work in a
browser while the demo's web tool runs.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timezone

import click
import httpx
from sqlalchemy import select

from delivery.sms import SmsSettings, send_due
from rating_core.ratings.store import RatingStore
from rating_core.rules.privacy import mask_phone
from rating_core.rules.settings import Settings
from rating_core.store.models import Call, Rating
from simulators.sms_gateway import SimulatedSmsGateway
from web import create_app

LINK = re.compile(r"https?://\S+/r/([A-Za-z0-9_-]+)")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def run_sms(store: RatingStore, public_url: str, settings: Settings) -> None:
    for name in ("delivery.sms", "httpx"):
        logging.getLogger(name).setLevel(logging.WARNING)
    assert settings.secret_key, "the demo sets one; the web tool signs with the same"
    with SimulatedSmsGateway(deduplicates=True) as gateway, httpx.Client() as client:
        sms = SmsSettings(gateway.url, None, public_url, settings.secret_key)
        result = send_due(store.sessions, store.rules, client, sms, datetime.now(timezone.utc))
        messages = list(gateway.delivered)
    click.echo(f"\n8. 补充评价: {result.sent} SMS sent to callers who did not rate ({result.skipped} skipped), "
               f"through a simulated gateway at {gateway.url}")
    for message in messages[:3]:
        click.echo(f"   {mask_phone(message['phone'])}: {message['content']}")
    if not messages:
        return
    token = LINK.search(messages[0]["content"])
    assert token is not None, "the SMS template lost its link"
    app = create_app(store, {"SESSION_COOKIE_SECURE": False}, settings)
    citizen = app.test_client()
    path = f"/r/{token[1]}"
    page = citizen.get(path).data.decode()
    form_token = CSRF.search(page)
    assert form_token is not None, "the rating page lost its CSRF token"
    answer = citizen.post(path, data={"csrf_token": form_token[1], "level": "dissatisfied",
                                      "tags": ["inefficient"], "text": "短信评价：办理太慢"})
    with store.sessions() as session:
        rating = session.scalars(select(Rating).join(Call).where(Call.caller_number == messages[0]["phone"])
                                 .where(Rating.channel == "supplementary")).first()
        task = rating.callback_task.id if rating is not None and rating.callback_task else None
    click.echo(f"   the first caller opened the link and rated 不满意 (HTTP {answer.status_code}): "
               f"stored as channel supplementary, 主动评价, callback task #{task} opened")
