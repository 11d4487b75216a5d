"""The evaluation over real FastAGI TCP, Asterisk played by the simulated channel; store on SQLite and PostgreSQL."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from ivr.service import IvrService, running_ivr
from rating_core.store.models import Call
from simulators.asterisk_agi import Caller, CallResult, HangUp, Press, Silence, Speak, run_call
from simulators.callers import check_store, plan_calls, simulate

VARS = {"EVAL_AGENT": "1024", "EVAL_QUEUE": "社保咨询", "EVAL_CASE": "GD20261122000001", "EVAL_UNIT": "市人社局",
        "EVAL_LINKEDID": "1795316400.1"}
_counter = iter(range(10**6))
ROOT = Path(__file__).resolve().parent.parent


async def place(ivr: IvrService, *reactions, variables=VARS, script="postcall?hotline=12345") -> CallResult:
    caller = Caller(list(reactions), callerid="13812345678", variables=dict(variables))
    return await run_call("127.0.0.1", ivr.server.port, caller, uniqueid=f"1795316432.{next(_counter)}", script=script)


def stored(ivr: IvrService, result: CallResult) -> Call | None:
    with ivr.store.sessions() as s:
        return s.scalars(
            select(Call).where(Call.uniqueid == result.uniqueid).options(selectinload(Call.rating))
        ).one_or_none()


def sent(result: CallResult) -> list[str]:
    return [" ".join(words) for words in result.channel.commands]


@pytest.mark.parametrize(("key", "level"), [("1", "very_satisfied"), ("2", "satisfied"), ("3", "basic")])
async def test_a_satisfied_key_is_stored_with_the_channel_variables(ivr: IvrService, key: str, level: str) -> None:
    result = await place(ivr, Press(key))
    assert result.closed_by_server and not result.error and not result.channel.violations
    call = stored(ivr, result)
    assert call is not None and call.rating is not None
    assert (call.rating.level, call.rating.channel, call.rating.is_active) == (level, "dtmf", True)
    assert (call.agent_id, call.queue, call.case_number, call.unit, call.linkedid) == (
        "1024", "社保咨询", "GD20261122000001", "市人社局", "1795316400.1")
    assert call.caller_number == "13812345678" and call.hotline == "12345"
    assert call.end_reason == "completed" and call.progress == "completed" and call.ended_at is not None
    assert sent(result) == [
        "GET VARIABLE EVAL_AGENT", "GET VARIABLE EVAL_QUEUE", "GET VARIABLE EVAL_CASE", "GET VARIABLE EVAL_UNIT",
        "GET VARIABLE EVAL_LINKEDID", "ANSWER", "GET DATA hotline-eval/12345/menu 6000 1",
        "STREAM FILE hotline-eval/12345/thanks ", "HANGUP",
    ]
    assert result.agistatus == "HANGUP"  # we hung up with HANGUP, then closed


async def test_a_dissatisfied_caller_gives_a_tag_and_a_voice_message(ivr: IvrService) -> None:
    result = await play_12333(ivr, Press("5"), Press("5"), Silence(), Speak(6.0, "#"))
    call = stored(ivr, result)
    assert call.rating.level == "very_dissatisfied" and call.rating.is_negative
    assert call.rating.reason_tags == ["long_wait"]  # 12333's key 5
    # The day folder is the Beijing date of the call (Record() makes it; RECORD FILE would not).
    day = call.started_at.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y%m%d")
    assert call.rating.voice_message_file == f"/var/spool/asterisk/hotline-eval/12333/{day}/{result.uniqueid}.wav"
    assert call.rating.voice_message_seconds == pytest.approx(5.75)  # Record() trims the key's quarter second
    assert f"EXEC Record {call.rating.voice_message_file},3,30,k" in sent(result)  # k: a hangup keeps it
    assert "STREAM FILE hotline-eval/12333/thanks_negative " in sent(result)
    assert call.end_reason == "completed"


async def play_12333(ivr: IvrService, *reactions) -> CallResult:
    return await place(ivr, *reactions, script="postcall?hotline=12333")


async def test_silence_in_the_recording_is_no_message(ivr: IvrService) -> None:
    result = await place(ivr, Press("4"), Press("1"), Silence(), Silence())
    call = stored(ivr, result)
    assert call.rating.reason_tags == ["attitude"]
    assert call.rating.voice_message_file is None


async def test_hash_during_the_invitation_skips_the_message(ivr: IvrService) -> None:
    result = await place(ivr, Press("4"), Press("3"), Press("#"))
    assert not any(c.startswith("EXEC Record") for c in sent(result))
    assert stored(ivr, result).rating.reason_tags == ["unresolved"]


async def test_hangup_before_any_key_leaves_an_unrated_record(ivr: IvrService) -> None:
    result = await place(ivr, HangUp())
    assert result.closed_by_server and result.agistatus == "HANGUP"
    call = stored(ivr, result)
    assert call.rating is None
    assert (call.progress, call.end_reason, call.menu_plays) == ("menu", "caller_hangup", 1)
    # -1 before the HANGUP line came: CHANNEL STATUS (511) tells hangup from failure; nothing after that.
    assert sent(result)[-2:] == ["GET DATA hotline-eval/12345/menu 6000 1", "CHANNEL STATUS"]


async def test_hangup_right_after_the_key_keeps_the_rating(ivr: IvrService) -> None:
    result = await place(ivr, Press("5"), HangUp())
    call = stored(ivr, result)
    assert call.rating.level == "very_dissatisfied" and call.rating.reason_tags == []
    assert (call.progress, call.end_reason) == ("rated", "caller_hangup")


async def test_hangup_while_leaving_a_message_keeps_the_message(ivr: IvrService) -> None:
    result = await place(ivr, Press("4"), Press("2"), Silence(), Speak(4.0, "hangup"))
    call = stored(ivr, result)
    assert call.rating.voice_message_seconds == pytest.approx(4.0)
    assert call.end_reason == "caller_hangup"


async def test_silence_replays_the_menu_then_records_unrated(ivr: IvrService) -> None:
    result = await place(ivr)
    call = stored(ivr, result)
    assert call.rating is None
    assert (call.end_reason, call.menu_plays, call.progress) == ("no_input", 2, "menu")
    assert sent(result)[-4:] == [
        "STREAM FILE hotline-eval/12345/no_input 0123456789*#", "GET DATA hotline-eval/12345/menu 6000 1",
        "STREAM FILE hotline-eval/12345/goodbye ", "HANGUP",
    ]


async def test_invalid_key_says_so_and_replays(ivr: IvrService) -> None:
    result = await place(ivr, Press("9"), Silence(), Press("2"))
    assert "STREAM FILE hotline-eval/12345/invalid 0123456789*#" in sent(result)
    assert stored(ivr, result).rating.level == "satisfied"


async def test_a_key_during_the_error_prompt_is_taken_at_once(ivr: IvrService) -> None:
    result = await place(ivr, Press("7"), Press("3"))
    assert sent(result).count("GET DATA hotline-eval/12345/menu 6000 1") == 1
    assert stored(ivr, result).rating.level == "basic"


async def test_only_invalid_keys_end_unrated(ivr: IvrService) -> None:
    result = await place(ivr, *[Press("8"), Silence()] * 3)
    call = stored(ivr, result)
    assert call.rating is None and call.end_reason == "invalid_input"


async def test_star_repeats_the_menu(ivr: IvrService) -> None:
    result = await place(ivr, Press("*"), Press("1"))
    assert sent(result).count("GET DATA hotline-eval/12345/menu 6000 1") == 2
    assert stored(ivr, result).rating.level == "very_satisfied"


async def test_missing_variables_are_coped_with_and_logged(ivr: IvrService, caplog) -> None:
    caplog.set_level(logging.WARNING)
    result = await place(ivr, Press("2"), variables={})
    call = stored(ivr, result)
    assert call.rating.level == "satisfied"
    assert (call.agent_id, call.queue, call.case_number, call.unit) == (None, None, None, None)
    assert call.linkedid == result.uniqueid  # from ${CHANNEL(linkedid)}
    assert "channel variables not set: EVAL_AGENT, EVAL_QUEUE" in caplog.text
    assert "138****5678" in caplog.text and "13812345678" not in caplog.text  # masked in logs


async def test_hotline_from_the_channel_variable(ivr: IvrService) -> None:
    result = await place(ivr, Press("1"), variables=VARS | {"EVAL_HOTLINE": "12333"}, script="postcall")
    assert stored(ivr, result).hotline == "12333"


async def test_unknown_hotline_ends_cleanly_and_is_recorded(ivr: IvrService, caplog) -> None:
    result = await place(ivr, Press("1"), script="postcall?hotline=110")
    assert result.closed_by_server and result.agistatus == "SUCCESS"
    assert not any(c.startswith(("GET DATA", "STREAM FILE")) for c in sent(result))
    call = stored(ivr, result)
    assert call.rating is None and call.end_reason == "unknown_hotline" and call.hotline == "110"
    assert "unknown hotline '110'" in caplog.text


async def test_unknown_script_path_is_closed(ivr: IvrService, caplog) -> None:
    result = await place(ivr, Press("1"), script="nosuchscript")
    assert result.closed_by_server and result.channel.commands == []
    assert stored(ivr, result) is None
    assert "no script for path 'nosuchscript'" in caplog.text


async def test_missing_prompt_file_does_not_end_the_evaluation(store, journal) -> None:
    async with running_ivr(store, journal, "127.0.0.1", 0) as ivr:
        caller = Caller([Press("6"), Press("2")], variables=VARS)
        sounds = {"hotline-eval/12345/menu": 9.0, "hotline-eval/12345/thanks": 2.0}  # no "invalid" prompt
        result = await run_call("127.0.0.1", ivr.server.port, caller, uniqueid="1795316499.1", sounds=sounds)
    assert result.agistatus == "FAILURE"  # as Asterisk reports a failed STREAM FILE
    assert stored(ivr, result).rating.level == "satisfied"


async def test_many_concurrent_calls_each_land_as_given(ivr: IvrService) -> None:
    planned = plan_calls(ivr.rules, 150, seed=7)
    summary = await simulate("127.0.0.1", ivr.server.port, planned, concurrency=75)
    with ivr.store.sessions() as s:
        check_store(s, planned, summary)
    assert summary.errors == [] and summary.mismatches == []
    assert sum(summary.expected_levels.values()) + summary.unrated == 150
    assert {"satisfied", "silent", "early_hangup", "dissatisfied_with_message"} <= set(summary.by_kind)


async def test_the_service_calls_recording_comes_with_the_agi_url(ivr: IvrService) -> None:
    path = "/var/spool/asterisk/monitor/1795316432-2001.wav"
    result = await place(ivr, Press("2"), script=f"postcall?hotline=12345&recording={path}")
    assert stored(ivr, result).recording_file == path
    plain = await place(ivr, Press("2"))
    assert stored(ivr, plain).recording_file is None


def test_the_server_keeps_full_garbage_collections_rare() -> None:
    """Thousands of calls' live objects make each full collection a stop of the event loop
    (benchmarks/agi_concurrency.py); `hotline-eval agi` freezes what it loaded and collects less often.
    In a process of its own, as it changes the interpreter's collector."""
    probe = ("import gc; from ivr.service import GC_THRESHOLDS, tune_garbage_collector; "
             "before = gc.get_freeze_count(); tune_garbage_collector(); "
             "print(before, gc.get_freeze_count() > 10000, gc.get_threshold() == GC_THRESHOLDS, "
             "GC_THRESHOLDS[0] > 700)")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.split() == ["0", "True", "True", "True"]
