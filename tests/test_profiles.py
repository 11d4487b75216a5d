"""Outbound profiles: golden bodies per shipped profile, refusals, the public id, and `webhooks render`.

Each case is made through the real store (call events applied, the callback and
appeal functions called) at fixed times; its outbox events are rendered under
every shipped profile and compared with ``tests/data/profiles/<profile>/<case>.json``
exactly, and checked against the profile's schema. Only what is random is fixed
for the comparison: the event ids (numbered in order) and the rating's public id
(a constant passed to the renderer). Run with ``UPDATE_GOLDEN=1`` to write the
files anew, then read every changed line before committing them.
"""

from __future__ import annotations

import json
import os
import re
import uuid
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select, text

from hotline_eval.cli import main
from rating_core.complaints.appeals import decide_appeal, file_appeal
from rating_core.complaints.callback_tasks import (
    claim_attempt,
    mark_rectified,
    record_answer,
    record_outcome,
    record_verdict,
    request_attempt,
)
from rating_core.events.call_events import CallEnded, CallStarted, RatingGiven, ReasonGiven, VoiceMessageRecorded
from rating_core.outbox.profile import PROFILES_DIR, ProfileError, load_profile, parse_profile, shipped_profiles
from rating_core.outbox.render import Refusal, RenderContext, render, render_context, validate
from rating_core.ratings.lifecycle import default_unrated
from rating_core.ratings.store import RatingStore
from rating_core.ratings.supplementary import link_token
from rating_core.ratings.supplementary_rating import give_supplementary
from rating_core.rules.rulebook import Rules
from rating_core.store.migrate import downgrade, upgrade
from rating_core.store.models import Call, CallbackTask, OutboxEvent, Rating, SmsReminder

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 20, 9, 30, tzinfo=CST)  # a Friday morning, inside the calling window
GOLDEN = Path(__file__).parent / "data" / "profiles"
PUBLIC_ID = "6f1c2a4e-8b3d-4c5e-9f70-1a2b3c4d5e6f"
CASE_NUMBER = "GD20261120000123"
SECRET = "test-link-secret"
# 杭州市上城区; a 统一社会信用代码 of the right shape (GB 32100); the data-source code the platform gave.
REGION, DEPARTMENT, SOURCE = "330102", "11330102MB1957806X", "12345"
UNIT = "市人社局"


def started(uid: str, **extra: Any) -> CallStarted:
    values: dict[str, Any] = dict(uniqueid=uid, hotline="12345", at=T0, caller_number="13800000000", agent_id="1024",
                                  queue="社保咨询", case_number=CASE_NUMBER, unit=UNIT, linkedid="1795316400.1")
    return CallStarted(**(values | extra))


def rating_id(store: RatingStore, uid: str) -> int:
    with store.sessions() as session:
        return session.scalars(select(Rating.id).join(Call).where(Call.uniqueid == uid)).one()


def task_id(store: RatingStore, uid: str) -> int:
    with store.sessions() as session:
        return session.scalars(select(CallbackTask.id).join(Rating).join(Call).where(Call.uniqueid == uid)).one()


# -- the cases ---------------------------------------------------------------------------------------


def keypress_satisfied(store: RatingStore, rules: Rules) -> str:
    uid = "1795316400.11"
    store.apply([started(uid), RatingGiven(uid, "satisfied", "dtmf", T0 + timedelta(seconds=6))])
    return uid


def spoken_dissatisfied(store: RatingStore, rules: Rules) -> str:
    """不满意 said aloud, two reasons keyed, and a voice message (which the platforms' bodies do not carry)."""
    uid = "1795316400.12"
    store.apply([started(uid),
                 RatingGiven(uid, "dissatisfied", "speech", T0 + timedelta(seconds=7), heard="不满意", confidence=0.87),
                 ReasonGiven(uid, ("attitude", "unresolved"), T0 + timedelta(seconds=12)),
                 VoiceMessageRecorded(uid, "/var/spool/asterisk/hotline-eval/12345/1795316400.12.wav", 8.5,
                                      T0 + timedelta(seconds=25)),
                 CallEnded(uid, "completed", T0 + timedelta(seconds=30))])
    return uid


def default_after_seven_days(store: RatingStore, rules: Rules) -> str:
    uid = "1795316400.13"
    store.apply([started(uid), CallEnded(uid, "no_input", T0 + timedelta(seconds=30), progress="menu", menu_plays=2)])
    with store.sessions.begin() as session:
        assert default_unrated(session, rules, T0 + timedelta(days=7, hours=1)) == 1
    return uid


def supplementary_by_sms(store: RatingStore, rules: Rules) -> str:
    uid = "1795316400.14"
    store.apply([started(uid), CallEnded(uid, "caller_hangup", T0 + timedelta(seconds=20), progress="menu")])
    with store.sessions.begin() as session:
        reminder = session.scalars(select(SmsReminder).join(Call).where(Call.uniqueid == uid)).one()
        reminder.status, reminder.sent_at = "sent", reminder.next_attempt_at
        token = link_token(reminder.code, SECRET)
    with store.sessions.begin() as session:
        give_supplementary(session, rules, token, SECRET, "dissatisfied", ["buck_passing"],
                           "材料要求前后说法不一，跑了三趟", T0 + timedelta(days=1, hours=2))
    return uid


def rectified_then_satisfied(store: RatingStore, rules: Rules) -> str:
    """A 差评 verified (限期整改), rectified, and the re-asked satisfaction answered 满意."""
    uid = "1795316400.15"
    store.apply([started(uid), RatingGiven(uid, "very_dissatisfied", "dtmf", T0 + timedelta(seconds=5)),
                 ReasonGiven(uid, ("unresolved",), T0 + timedelta(seconds=9))])
    task = task_id(store, uid)
    policy = rules.callback
    with store.sessions.begin() as session:
        first = request_attempt(session, policy, task, T0 + timedelta(minutes=1), "system:rq").attempt_id
        assert first is not None and claim_attempt(session, first, T0 + timedelta(minutes=1), "Local/x@callback-out")
        record_outcome(session, policy, first, "answered", T0 + timedelta(minutes=3), "dialer")
    with store.sessions.begin() as session:
        record_verdict(session, policy, task, "deadline_fix", T0 + timedelta(hours=2), "agent:2001",
                       "社保转移涉及两地经办，已建立台账限期办结")
    rectified_at = datetime(2026, 11, 24, 10, 0, tzinfo=CST)  # the next Tuesday
    with store.sessions.begin() as session:
        mark_rectified(session, policy, task, rectified_at, "unit:rsj", "已为市民办结社保关系转移")
    with store.sessions.begin() as session:
        again = request_attempt(session, policy, task, rectified_at, "system:rq").attempt_id
        assert again is not None and claim_attempt(session, again, rectified_at, "Local/x@callback-out")
        record_answer(session, again, "satisfied", True, "1", "cb.1", rectified_at + timedelta(seconds=40),
                      "system:callback-ivr")
    return uid


def upheld_appeal(store: RatingStore, rules: Rules) -> str:
    uid = "1795316400.16"
    store.apply([started(uid), RatingGiven(uid, "very_dissatisfied", "dtmf", T0 + timedelta(seconds=5))])
    with store.sessions.begin() as session:
        appeal = file_appeal(session, rules.callback, task_id(store, uid), UNIT, "来电人反复来电辱骂，与所办事项无关",
                             T0 + timedelta(hours=3), "unit:rsj")
    with store.sessions.begin() as session:
        decide_appeal(session, appeal.id, True, "malicious", "录音显示来电人辱骂坐席，与办件无关",
                      T0 + timedelta(days=1), "supervisor:boss")
    return uid


CASES: dict[str, Callable[[RatingStore, Rules], str]] = {
    "keypress_satisfied": keypress_satisfied,
    "spoken_dissatisfied_with_tags_and_voice_message": spoken_dissatisfied,
    "default_after_seven_days": default_after_seven_days,
    "supplementary_by_sms": supplementary_by_sms,
    "rectified_then_satisfied": rectified_then_satisfied,
    "upheld_appeal": upheld_appeal,
}


def payloads(store: RatingStore, uid: str) -> list[dict[str, Any]]:
    """The case's outbox payloads in order, their random event ids replaced by numbers in order."""
    with store.sessions() as session:
        events = session.scalars(select(OutboxEvent).where(OutboxEvent.rating_id == rating_id(store, uid))
                                 .order_by(OutboxEvent.id)).all()
        found = [dict(event.payload) for event in events]
    for number, payload in enumerate(found, 1):
        assert re.fullmatch(r"evt_[0-9a-f]{32}", payload["id"])
        payload["id"] = f"evt_{number:032x}"
    return found


def context(rules: Rules) -> RenderContext:
    return render_context(rules, REGION, DEPARTMENT, SOURCE)


def rendered(profile_name: str, found: list[dict[str, Any]], rules: Rules) -> list[dict[str, Any]]:
    profile = load_profile(profile_name)
    bodies = []
    for payload in found:
        body = render(profile, payload, PUBLIC_ID, context(rules))
        if body is not None:
            assert validate(profile, body) == [], (payload["type"], body)
            bodies.append({"type": payload["type"], "body": body})
    return bodies


@pytest.mark.parametrize("case", CASES)
def test_golden_bodies_for_every_shipped_profile(store: RatingStore, rules: Rules, case: str) -> None:
    found = payloads(store, CASES[case](store, rules))
    for profile_name in shipped_profiles():
        bodies = rendered(profile_name, found, rules)
        golden = GOLDEN / profile_name / f"{case}.json"
        if os.environ.get("UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(json.dumps(bodies, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
        assert bodies == json.loads(golden.read_text(encoding="utf-8")), (profile_name, case)
        # Each body's keys in the profile's order: a platform that reads positionally gets them right too.
        if profile_name != "native":
            order = [spec.key for spec in load_profile(profile_name).mapping.fields]
            for entry in bodies:
                keys = list(entry["body"])
                assert keys == [key for key in order if key in keys]


def test_the_native_body_is_the_stored_payload_unchanged(store: RatingStore, rules: Rules) -> None:
    found = payloads(store, spoken_dissatisfied(store, rules))
    native = load_profile("native")
    for payload in found:
        assert render(native, payload, PUBLIC_ID, context(rules)) == payload
        assert validate(native, payload) == []
    assert "public_id" not in json.dumps(found)  # the native schema's consumers see no new key


# -- what a profile cannot express is refused, never sent cut or with a hole ----------------------------


def created_payload(store: RatingStore, **extra: Any) -> dict[str, Any]:
    uid = "1795316400.99"
    store.apply([started(uid, **extra), RatingGiven(uid, "satisfied", "dtmf", T0)])
    return payloads(store, uid)[0]


@pytest.mark.parametrize("profile_name", ["gbt39046", "zj-example"])
def test_a_rating_without_a_case_number_is_refused_naming_the_item(store, rules, profile_name: str) -> None:
    payload = created_payload(store, case_number=None)
    with pytest.raises(Refusal) as refused:
        render(load_profile(profile_name), payload, PUBLIC_ID, context(rules))
    assert refused.value.reasons == ("缺少必填项“办件编号”" + ("（办件编号）" if profile_name == "gbt39046"
                                                           else "（projectNo）") + "：该评价没有工单号",)


def test_a_case_number_over_the_length_is_refused_not_cut(store, rules) -> None:
    payload = created_payload(store, case_number="GD" + "7" * 49)  # 51 characters; an..50
    with pytest.raises(Refusal, match="长 51 个字符，超过平台限定的 50 个"):
        render(load_profile("gbt39046"), payload, PUBLIC_ID, context(rules))


def test_a_missing_setting_is_refused_naming_the_variable(store, rules) -> None:
    payload = created_payload(store)
    with pytest.raises(Refusal) as refused:
        render(load_profile("zj-example"), payload, PUBLIC_ID, RenderContext(region_code=REGION))
    assert refused.value.reasons == (
        "缺少必填项“部门统一社会信用代码”（deptCode）：未设置 HOTLINE_EVAL_DEPARTMENT_CODE",
        "缺少必填项“数据来源”（dataSource）：未设置 HOTLINE_EVAL_DATA_SOURCE_CODE")


def test_a_malformed_code_passes_the_renderer_but_not_the_schema(store, rules) -> None:
    payload = created_payload(store)
    profile = load_profile("zj-example")
    body = render(profile, payload, PUBLIC_ID, render_context(rules, REGION, "not-a-credit-code", SOURCE))
    assert body is not None
    errors = validate(profile, body)
    assert len(errors) == 1 and errors[0].startswith("deptCode：格式不符")


def test_events_a_profile_does_not_send_render_to_nothing(store, rules) -> None:
    found = payloads(store, rectified_then_satisfied(store, rules))
    attempts = [payload for payload in found if payload["type"] == "callback.attempt"]
    assert attempts
    for name in ("gbt39046", "zj-example"):
        assert all(render(load_profile(name), p, PUBLIC_ID, context(rules)) is None for p in attempts)


# -- profiles as data: a broken one is refused at load ---------------------------------------------------


def test_shipped_profiles_load() -> None:
    assert shipped_profiles() == ["native", "gbt39046", "zj-example"]
    for name in shipped_profiles():
        assert load_profile(name).name == name


@pytest.mark.parametrize(("change", "message"), [
    (lambda d: d["fields"][0].update(derive="stars_times_two"), "unknown derivation"),
    (lambda d: d["fields"][1].update(derive="rating_id"), "exactly one of path, derive, setting, value"),
    (lambda d: d.update(events=["rating.sold"]), "unknown or no event types"),
    (lambda d: d["fields"][2].update(table="no_such_table"), "no code table"),
    (lambda d: d["fields"].append(dict(d["fields"][0])), "fields named twice"),
    (lambda d: d.update(colour="blue"), "Extra inputs are not permitted"),
    (lambda d: d["fields"][3].pop("pattern"), "a pattern goes with format datetime"),
])
def test_a_broken_profile_is_refused_at_load(change: Callable[[dict[str, Any]], object], message: str) -> None:
    import yaml

    source = PROFILES_DIR / "gbt39046.yaml"
    document = yaml.safe_load(source.read_text(encoding="utf-8"))
    document["fields"] = [dict(field) for field in document["fields"]]
    change(document)
    with pytest.raises(ProfileError, match=message):
        parse_profile(document, load_profile("gbt39046").schema_)


def test_a_profile_file_of_ones_own_with_a_broken_schema_is_refused(tmp_path: Path) -> None:
    source = PROFILES_DIR
    (tmp_path / "gbt39046.yaml").write_text((source / "gbt39046.yaml").read_text(encoding="utf-8"), encoding="utf-8")
    (tmp_path / "gbt39046.schema.json").write_text('{"type": "nonsense"}', encoding="utf-8")
    with pytest.raises(ProfileError, match="not a valid JSON Schema"):
        load_profile(tmp_path / "gbt39046.yaml")
    with pytest.raises(ProfileError, match="unknown profile"):
        load_profile("gansu")


# -- the public id ----------------------------------------------------------------------------------------


def test_every_rating_gets_its_own_uuid4_public_id(store: RatingStore, rules: Rules) -> None:
    keypress_satisfied(store, rules)
    default_after_seven_days(store, rules)
    with store.sessions() as session:
        ids = session.scalars(select(Rating.public_id)).all()
    assert len(set(ids)) == 2 and all(uuid.UUID(value).version == 4 for value in ids)


def test_the_migration_gives_existing_ratings_distinct_public_ids(store: RatingStore, rules: Rules) -> None:
    for case in (keypress_satisfied, spoken_dissatisfied, upheld_appeal):
        case(store, rules)
    downgrade(store.engine, "0021")
    upgrade(store.engine)
    with store.engine.connect() as conn:
        ids = conn.execute(text("SELECT public_id FROM ratings")).scalars().all()
    assert len(ids) == 3 and len(set(ids)) == 3 and all(uuid.UUID(value).version == 4 for value in ids)
    with pytest.raises(Exception, match="(?i)unique"), store.engine.begin() as conn:
        conn.execute(text("UPDATE ratings SET public_id = :same"), {"same": ids[0]})


# -- the command line --------------------------------------------------------------------------------------


def cli(store: RatingStore, *args: str, **env: str) -> Any:
    url = store.engine.url.render_as_string(hide_password=False)
    return CliRunner().invoke(main, list(args), env={"DATABASE_URL": url, "HOTLINE_EVAL_REGION_CODE": REGION,
                                                      "HOTLINE_EVAL_DEPARTMENT_CODE": DEPARTMENT,
                                                      "HOTLINE_EVAL_DATA_SOURCE_CODE": SOURCE, **env})


def test_webhooks_render_prints_the_bodies_of_a_rating_by_either_id(store: RatingStore, rules: Rules) -> None:
    uid = spoken_dissatisfied(store, rules)
    with store.sessions() as session:
        rating = session.scalars(select(Rating).join(Call).where(Call.uniqueid == uid)).one()
        number, public_id = rating.id, rating.public_id
    by_public = cli(store, "webhooks", "render", "--profile", "gbt39046", "--rating", public_id)
    assert by_public.exit_code == 0, by_public.output
    printed = json.loads(by_public.stdout)
    assert [entry["type"] for entry in printed] == ["rating.created", "rating.updated", "rating.updated"]
    assert all(entry["schema"] == "通过" for entry in printed)
    assert printed[1]["body"]["评价编号"] == public_id and printed[1]["body"]["差评原因"] == "服务态度差、问题未解决"
    by_number = cli(store, "webhooks", "render", "--profile", "gbt39046", "--rating", str(number),
                    "--event", "rating.updated")
    assert by_number.exit_code == 0 and json.loads(by_number.stdout) == printed[1:]


def test_webhooks_render_exits_1_with_the_reasons(store: RatingStore, rules: Rules) -> None:
    uid = "1795316400.98"
    store.apply([started(uid, case_number=None), RatingGiven(uid, "satisfied", "dtmf", T0)])
    result = cli(store, "webhooks", "render", "--profile", "zj-example", "--rating", str(rating_id(store, uid)),
                 HOTLINE_EVAL_DATA_SOURCE_CODE="")
    assert result.exit_code == 1
    assert "缺少必填项“办件编号”（projectNo）：该评价没有工单号" in result.stderr
    assert "未设置 HOTLINE_EVAL_DATA_SOURCE_CODE" in result.stderr
    assert json.loads(result.stdout)[0]["body"] is None
    missing = cli(store, "webhooks", "render", "--profile", "zj-example", "--rating", "no-such-rating")
    assert missing.exit_code == 1 and "找不到评价 no-such-rating" in missing.output
    unknown = cli(store, "webhooks", "render", "--profile", "guangdong", "--rating", "1")
    assert unknown.exit_code == 1 and "unknown profile 'guangdong'" in unknown.output


def test_webhooks_profiles_lists_the_shipped_ones(store: RatingStore) -> None:
    result = cli(store, "webhooks", "profiles")
    assert result.exit_code == 0
    assert [line.split("  ")[0] for line in result.output.splitlines()] == ["native", "gbt39046", "zj-example"]
