"""The citizen's 补充评价 page over HTTP (Flask's test client, CSRF on), on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import select

from rating_core.events.call_events import CallStarted
from rating_core.store.models import Call, CallbackTask, Rating
from web_pages import signed_in, token, unrated_link


def stored(site, uid: str) -> Rating | None:
    with site.store.sessions() as session:
        found = session.scalars(select(Rating).join(Call).where(Call.uniqueid == uid)).one_or_none()
        if found is not None:
            found.callback_task  # load while open
        return found


def test_the_link_opens_the_page_without_login_and_shows_no_full_number(web_site) -> None:
    _uid, path = unrated_link(web_site)
    page = web_site.app.test_client().get(path)
    body = page.data.decode()
    assert page.status_code == 200
    assert "138****9999" in body and "13812349999" not in body
    assert "12345政务服务便民热线" in body and "服务态度差" in body
    assert body.count('type="radio" name="level"') == 5


def test_a_差评_by_link_is_stored_once_and_opens_a_callback(web_site) -> None:
    uid, path = unrated_link(web_site)
    client = web_site.app.test_client()
    form = {"csrf_token": token(client.get(path).data), "level": "very_dissatisfied",
            "tags": ["attitude", "buck_passing"], "text": "来回推诿"}
    done = client.post(path, data=form)
    assert done.status_code == 200 and "您的评价“非常不满意”已提交" in done.data.decode()
    given = stored(web_site, uid)
    assert (given.channel, given.is_active, given.reason_tags) == ("supplementary", True, ["attitude", "buck_passing"])
    assert given.callback_task.state == "pending"
    again = client.post(path, data=form)
    assert again.status_code == 410 and "该链接已使用过" in again.data.decode()
    assert client.get(path).status_code == 410
    with web_site.store.sessions() as session:
        assert len(session.scalars(select(CallbackTask).where(CallbackTask.rating_id == given.id)).all()) == 1


def test_a_missing_reason_shows_the_form_again_and_saves_nothing(web_site) -> None:
    uid, path = unrated_link(web_site)
    client = web_site.app.test_client()
    answer = client.post(path, data={"csrf_token": token(client.get(path).data), "level": "dissatisfied"})
    assert answer.status_code == 400 and "请选择不满意的原因，或写下您的意见" in answer.data.decode()
    assert ('value="dissatisfied"\n             data-negative="yes" checked'
            in answer.data.decode())  # kept for the retry
    assert stored(web_site, uid) is None


def test_a_post_without_the_csrf_token_is_refused(web_site) -> None:
    uid, path = unrated_link(web_site)
    answer = web_site.app.test_client().post(path, data={"level": "satisfied"})
    assert answer.status_code == 400 and "CSRF" in answer.data.decode()
    assert stored(web_site, uid) is None


@pytest.mark.parametrize("mangle", [lambda p: p[:-1] + ("A" if p[-1] != "A" else "B"), lambda p: p[:-3],
                                    lambda p: p + "%00", lambda p: "/r/" + "A" * 24])
def test_forged_and_damaged_links_get_a_chinese_404(web_site, mangle) -> None:
    uid, path = unrated_link(web_site)
    answer = web_site.app.test_client().get(mangle(path))
    assert answer.status_code == 404 and ("链接无效" in answer.data.decode() or "链接不完整" in answer.data.decode()
                                          or "页面或记录不存在" in answer.data.decode())
    assert stored(web_site, uid) is None


def test_a_link_whose_sms_was_not_sent_does_not_open(web_site) -> None:
    _uid, path = unrated_link(web_site, sent=False)
    assert web_site.app.test_client().get(path).status_code == 404


def test_supervisors_see_batches_and_lift_a_flag(web_site) -> None:
    from rating_core.events.call_events import RatingGiven

    now = datetime.now(timezone.utc)
    web_site.store.apply([
        CallStarted(uniqueid="b.1", hotline="12345", at=now - timedelta(hours=3), caller_number="13711112222"),
        RatingGiven("b.1", "satisfied", "dtmf", now - timedelta(hours=3)),
        CallStarted(uniqueid="b.2", hotline="12345", at=now - timedelta(hours=2), caller_number="13711112222"),
        RatingGiven("b.2", "satisfied", "dtmf", now - timedelta(hours=2)),
    ])
    batched = stored(web_site, "b.2")
    assert batched.batch_of_id == stored(web_site, "b.1").id
    boss = signed_in(web_site, "boss")
    page = boss.get("/supervisor/batches").data.decode()
    assert f'data-rating="{batched.id}"' in page and "137****2222" in page and "13711112222" not in page
    assert signed_in(web_site, "agent").get("/supervisor/batches").status_code == 403
    admin = signed_in(web_site, "admin")  # neither reads the list nor rules on it (README's role table)
    assert admin.get("/supervisor/batches").status_code == 403
    assert admin.post(f"/supervisor/batches/{batched.id}/lift",
                      data={"csrf_token": token(admin.get("/admin/users").data)}).status_code == 403
    boss.post(f"/supervisor/batches/{batched.id}/lift", data={"csrf_token": token(page)})
    assert stored(web_site, "b.2").batch_of_id is None and stored(web_site, "b.2").batch_exempt
