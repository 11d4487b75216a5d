"""The whole 补充评价 loop from a real silent caller over FastAGI: 未评价, one SMS through the gateway over HTTP,
the link on the citizen's page, one rating and its callback; and a silent caller left alone getting the default."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import httpx
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from delivery.sms import SmsSettings, send_due
from ivr.service import running_ivr
from rating_core.ratings.lifecycle import default_unrated
from rating_core.ratings.store import RatingStore
from rating_core.store.models import Call, Rating, SmsReminder
from simulators.asterisk_agi import Caller, run_call
from simulators.sms_gateway import SimulatedSmsGateway
from web import create_app
from web_pages import token

SECRET = "flow-secret"


async def silent_call(port: int, uid: str, number: str) -> None:
    caller = Caller([], callerid=number, variables={"EVAL_AGENT": "1024"})
    result = await run_call("127.0.0.1", port, caller, uniqueid=uid, script="postcall?hotline=12345")
    assert result.error is None


def call(store: RatingStore, uid: str) -> Call:
    with store.sessions() as session:
        return session.scalars(select(Call).where(Call.uniqueid == uid).options(
            selectinload(Call.rating).selectinload(Rating.callback_task))).one()


async def test_a_silent_caller_rates_later_by_the_sms_link_once(engine, rules, journal) -> None:
    reminder = rules.lifecycle.supplementary.reminder.model_copy(update={"quiet_hours": None})  # any hour of the day
    supplementary = rules.lifecycle.supplementary.model_copy(update={"reminder": reminder})
    store = RatingStore(engine, rules.model_copy(update={"lifecycle": rules.lifecycle.model_copy(
        update={"supplementary": supplementary})}))
    async with running_ivr(store, journal, "127.0.0.1", 0) as ivr:
        await silent_call(ivr.server.port, "1795800000.1", "13855556666")
        await silent_call(ivr.server.port, "1795800000.2", "13877778888")
    silent = call(store, "1795800000.1")
    assert silent.rating is None and silent.end_reason == "no_input"  # 未评价

    with SimulatedSmsGateway() as gateway, httpx.Client() as client:
        settings = SmsSettings(gateway.url, None, "https://pj.example.gov.cn", SECRET)
        result = send_due(store.sessions, store.rules, client, settings,
                          datetime.now(timezone.utc) + timedelta(minutes=11))
    assert result.sent == 2
    [text] = gateway.delivered_to("13855556666")
    path = re.search(r"https://pj\.example\.gov\.cn(/r/[A-Za-z0-9_-]+)", text)[1]

    citizen = create_app(store, {"SECRET_KEY": SECRET, "SESSION_COOKIE_SECURE": False}).test_client()
    form = {"csrf_token": token(citizen.get(path).data), "level": "very_dissatisfied", "tags": ["unresolved"]}
    assert citizen.post(path, data=form).status_code == 200
    assert citizen.post(path, data=form).status_code == 410  # the link works once
    rated = call(store, "1795800000.1").rating
    assert (rated.level, rated.channel, rated.is_active) == ("very_dissatisfied", "supplementary", True)
    assert rated.callback_task is not None and rated.callback_task.state == "pending"

    # The other caller never rates: after 7 days the pass gives the default, not 主动评价.
    with store.sessions.begin() as session:
        assert default_unrated(session, store.rules, datetime.now(timezone.utc) + timedelta(days=7, minutes=1)) == 1
    defaulted = call(store, "1795800000.2").rating
    assert (defaulted.level, defaulted.channel, defaulted.is_active) == ("basic", "default", False)
    with store.sessions() as session:
        assert len(session.scalars(select(Rating)).all()) == 2
        assert [r.status for r in session.scalars(select(SmsReminder).order_by(SmsReminder.id))] == ["sent", "sent"]
