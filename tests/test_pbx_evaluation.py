"""The evaluation on a real Asterisk 22: each test a real call, placed by AMI Originate into the shipped
sample dialplan's ``postcall-eval`` and served by ``hotline-eval agi`` as a process of its own (PostgreSQL
store), the caller played by the robot in ``tests/real_pbx.py``.

The calls of this module run at once (the longest, a silent caller, takes a minute of prompts); each test
then reads what its call left: in the store, on Asterisk's disk and in the logs. The same callers are
played against the simulated channel too, and where the two disagree the simulator is wrong.
"""

from __future__ import annotations

import asyncio
import subprocess
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from conftest import fresh_postgres_database
from ivr.service import running_ivr
from rating_core.events.journal import Journal
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import parse_rules
from rating_core.store.database import make_engine
from rating_core.store.models import Call
from real_pbx import Pbx, PbxCall, pbx_rules, place_all, running_fastagi, variant
from simulators.asterisk_agi import Caller, CallResult, HangUp, Press, Say, Silence, Speak, run_call
from speech_audio import synthesise
from tmpfs import mount

VARIABLES = {"EVAL_AGENT": "1024", "EVAL_QUEUE": "社保咨询", "EVAL_CASE": "GD20261206000001", "EVAL_UNIT": "市人社局"}
BEIJING = ZoneInfo("Asia/Shanghai")

MESSAGE = "办事效率太低，我要投诉。"  # what the very dissatisfied caller says after the beep


def scenarios(message: bytes) -> dict[str, tuple[str, list]]:
    """What each caller does, prompt by prompt (a reaction wherever Asterisk waits for the caller)."""
    return {
        "very_satisfied": ("12345", [Press("1")]),
        "satisfied": ("12345", [Press("2")]),
        "basic": ("12345", [Press("3")]),
        "dissatisfied": ("12345", [Press("4"), Press("1"), Press("#")]),  # a reason; # skips the message
        # A reason, the invitation heard out, then a spoken message ended by #.
        "very_dissatisfied": ("12345", [Press("5"), Press("2"), Silence(), Say(message, press="#")]),
        "message_ends_in_silence": ("12333", [Press("4"), Press("3"), Silence(), Speak(3.0)]),
        "invalid_then_valid": ("12345", [Press("9"), Silence(), Press("2")]),  # hears 输入有误 out, then 2
        "valid_during_invalid": ("12345", [Press("0"), Press("3")]),  # cuts 输入有误 short with 3
        "repeat": ("12345", [Press("*"), Press("1")]),
        "silent": ("12345", []),
        "hangup_in_menu": ("12345", [HangUp()]),
        "hangup_in_tag_menu": ("12345", [Press("5"), HangUp()]),
        "hangup_in_message": ("12345", [Press("4"), Press("6"), Silence(), Speak(3.0, "hangup")]),
        "missing_prompt": ("12345-missing", [Press("2")]),
        "full_disk": ("12345-full", [Press("5"), Press("1"), Silence(), Speak(3.0, "#")]),
        "read_only_disk": ("12345-read-only", [Press("5"), Press("1"), Silence(), Speak(3.0, "#")]),
    }


# The simulated channel has no disk to fill: those two are the real PBX's alone.
SIMULATED = [name for name in scenarios(b"") if name not in ("full_disk", "read_only_disk")]


@dataclass
class Placed:
    """Every call of the module, on the PBX and on the simulator, and where to look afterwards."""

    pbx: Pbx
    store: RatingStore
    calls: dict[str, PbxCall]
    simulated: dict[str, tuple[CallResult, Call | None]]
    log: str  # the FastAGI server's
    disks: bool  # whether the full and the read-only disk could be mounted here

    def stored(self, name: str) -> Call:
        with self.store.sessions() as session:
            return session.scalars(select(Call).where(Call.uniqueid == self.calls[name].uniqueid)
                                   .options(selectinload(Call.rating))).one()


@pytest.fixture(scope="module")
def placed(pbx: Pbx, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Placed]:
    rules = pbx_rules(pbx)
    # A hotline whose "thanks" is missing from Asterisk's sounds (STREAM FILE: 200 result=-1 endpos=0).
    missing = pbx.sounds / "hotline-eval-missing" / "12345"
    missing.mkdir(parents=True, exist_ok=True)
    for prompt in (pbx.sounds / "hotline-eval" / "12345").glob("*.wav"):
        if prompt.name != "thanks.wav" and not (missing / prompt.name).exists():
            (missing / prompt.name).symlink_to(prompt)
    variant(rules, "12345-missing", of="12345", sound_dir="hotline-eval-missing/12345")
    # Voice messages onto a disk that is full, and onto one that is read-only.
    full, read_only = pbx.home / "spool" / "full", pbx.home / "spool" / "read-only"
    mounted = [folder for folder, options in ((full, "size=8k"), (read_only, "ro,size=64k")) if mount(folder, options)]
    for name, folder in (("12345-full", full), ("12345-read-only", read_only)):
        variant(rules, name, of="12345", sound_dir="hotline-eval/12345", voice_message={"directory": str(folder)})
    calls = {name: (hotline, Caller(list(reactions), callerid="13812345678", variables=VARIABLES))
             for name, (hotline, reactions) in scenarios(
                 synthesise(MESSAGE, tmp_path_factory.mktemp("voices"), "message", voice="cmn")).items()}
    home = tmp_path_factory.mktemp("fastagi")
    database = fresh_postgres_database("hotline_eval_pbx")
    store = RatingStore(make_engine(database), parse_rules(rules))
    try:
        with running_fastagi(pbx, home, database, rules) as server:
            on_the_pbx = place_all(pbx, calls)
        simulated = asyncio.run(simulate(store.rules, {name: calls[name] for name in SIMULATED}, tmp_path_factory))
        yield Placed(pbx, store, on_the_pbx, simulated, server.log(), disks=len(mounted) == 2)
    finally:
        store.engine.dispose()
        for folder in mounted:
            subprocess.run(["umount", str(folder)], check=False)


async def simulate(rules, calls: dict[str, tuple[str, Caller]],
                   tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[CallResult, Call | None]]:
    """The same callers against the simulated channel and an in-process server on SQLite."""
    folder = tmp_path_factory.mktemp("simulated")
    engine = make_engine(f"sqlite:///{folder / 'store.db'}")
    from rating_core.store.migrate import upgrade
    upgrade(engine)
    store = RatingStore(engine, rules)
    sounds = {f"{profile.sound_dir}/{prompt}": 3.0 for profile in rules.hotlines.values() for prompt in profile.prompts}
    sounds.pop("hotline-eval-missing/12345/thanks")
    out: dict[str, tuple[CallResult, Call | None]] = {}
    async with running_ivr(store, Journal(folder / "spool"), "127.0.0.1", 0) as ivr:
        for number, (name, (hotline, caller)) in enumerate(calls.items()):
            result = await run_call("127.0.0.1", ivr.server.port, caller, uniqueid=f"1796000000.{number}",
                                    script=f"postcall?hotline={hotline}", sounds=sounds)
            out[name] = (result, None)
    with store.sessions() as session:
        for name, (result, _) in out.items():
            out[name] = (result, session.scalars(select(Call).where(Call.uniqueid == result.uniqueid)
                                                 .options(selectinload(Call.rating))).one_or_none())
        session.expunge_all()
    engine.dispose()
    return out


def heard(call: PbxCall, prompt: str) -> bool:
    return any(command.startswith(("STREAM FILE", "GET DATA")) and prompt in command for command in call.commands)


# -- ratings by key -------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["very_satisfied", "satisfied", "basic", "dissatisfied", "very_dissatisfied"])
def test_every_level_is_stored_from_a_real_keypress(placed: Placed, name: str) -> None:
    call, stored = placed.calls[name], placed.stored(name)
    assert stored.rating is not None, call
    assert (stored.rating.level, stored.rating.channel, stored.rating.is_active) == (name, "dtmf", True)
    assert (stored.agent_id, stored.queue, stored.case_number, stored.unit) == (
        "1024", "社保咨询", "GD20261206000001", "市人社局")
    assert stored.caller_number == "13812345678" and stored.end_reason == "completed"
    assert stored.linkedid == call.uniqueid  # the channel's own linkedid: the dialplan passed none
    # The flow hung up itself after thanking the caller; Asterisk went on in the dialplan, then hung up.
    assert call.commands[-1] == "HANGUP" and call.agistatus == "HANGUP"
    assert heard(call, "thanks_negative" if stored.rating.is_negative else "/thanks")


def test_a_dissatisfied_callers_reason_and_voice_message_land_with_the_file_on_disk(placed: Placed) -> None:
    call, stored = placed.calls["very_dissatisfied"], placed.stored("very_dissatisfied")
    assert stored.rating.reason_tags == ["inefficient"]
    day = stored.started_at.astimezone(BEIJING).strftime("%Y%m%d")  # the Beijing date, not UTC's
    path = Path(stored.rating.voice_message_file)
    assert path == placed.pbx.voice_messages / "12345" / day / f"{call.uniqueid}.wav"
    assert path.exists(), f"Record() wrote no file: {call}"
    with wave.open(str(path)) as recording:
        assert (recording.getframerate(), recording.getnchannels(), recording.getsampwidth()) == (8000, 1, 2)
        seconds = recording.getnframes() / 8000
    # What was said, after the caller's moment to react to the beep; Record() cuts the key's quarter second.
    said = next(r for r in placed.calls["very_dissatisfied"].reactions.pending if isinstance(r, Say)).audio
    assert stored.rating.voice_message_seconds == pytest.approx(seconds, abs=0.01)
    assert len(said) / 16000 - 0.25 <= seconds <= len(said) / 16000 + 0.8
    assert any(c.startswith(f"EXEC Record {path},3,30,k") for c in call.commands)


def test_a_message_ended_by_silence_keeps_a_second_of_it(placed: Placed) -> None:
    stored = placed.stored("message_ends_in_silence")
    assert (stored.hotline, stored.rating.level, stored.rating.reason_tags) == ("12333", "dissatisfied", ["unresolved"])
    path = Path(stored.rating.voice_message_file)
    assert path.is_file() and path.parent.parent.name == "12333"
    # 3 s said; of the 3 s of silence that ended it, Record() keeps one.
    assert 4.0 <= stored.rating.voice_message_seconds <= 4.8


def test_a_wrong_key_gets_the_invalid_prompt_then_the_menu(placed: Placed) -> None:
    call = placed.calls["invalid_then_valid"]
    menus = [c for c in call.commands if c.startswith(("GET DATA", "STREAM FILE hotline-eval/12345/invalid"))]
    assert menus == ["GET DATA hotline-eval/12345/menu 6000 1", "STREAM FILE hotline-eval/12345/invalid 0123456789*#",
                     "GET DATA hotline-eval/12345/menu 6000 1"]
    stored = placed.stored("invalid_then_valid")
    assert (stored.rating.level, stored.menu_plays) == ("satisfied", 2)


def test_a_key_during_the_invalid_prompt_is_the_next_choice(placed: Placed) -> None:
    call, stored = placed.calls["valid_during_invalid"], placed.stored("valid_during_invalid")
    assert stored.rating.level == "basic" and stored.menu_plays == 1
    assert call.commands.count("GET DATA hotline-eval/12345/menu 6000 1") == 1


def test_star_replays_the_menu(placed: Placed) -> None:
    call, stored = placed.calls["repeat"], placed.stored("repeat")
    assert call.commands.count("GET DATA hotline-eval/12345/menu 6000 1") == 2
    assert (stored.rating.level, stored.menu_plays) == ("very_satisfied", 2)


def test_a_silent_caller_hears_the_menu_twice_and_is_left_unrated(placed: Placed) -> None:
    call, stored = placed.calls["silent"], placed.stored("silent")
    assert stored.rating is None
    assert (stored.end_reason, stored.menu_plays, stored.progress) == ("no_input", 2, "menu")
    assert call.commands[-3:] == ["GET DATA hotline-eval/12345/menu 6000 1", "STREAM FILE hotline-eval/12345/goodbye ",
                                  "HANGUP"]


# -- the caller hangs up: what was given is kept ------------------------------------------------------


def test_a_hangup_in_the_menu_leaves_an_unrated_call(placed: Placed) -> None:
    call, stored = placed.calls["hangup_in_menu"], placed.stored("hangup_in_menu")
    assert stored.rating is None and (stored.end_reason, stored.progress) == ("caller_hangup", "menu")
    assert call.agistatus == "HANGUP"
    # GET DATA answered -1, and CHANNEL STATUS told the hangup from a failure: nothing more was tried.
    assert call.commands[-2:] == ["GET DATA hotline-eval/12345/menu 6000 1", "CHANNEL STATUS"]


def test_a_hangup_in_the_reason_menu_keeps_the_rating(placed: Placed) -> None:
    stored = placed.stored("hangup_in_tag_menu")
    assert (stored.rating.level, stored.rating.reason_tags) == ("very_dissatisfied", [])
    assert (stored.end_reason, stored.progress) == ("caller_hangup", "rated")


def test_a_hangup_while_leaving_a_message_keeps_the_message(placed: Placed) -> None:
    call, stored = placed.calls["hangup_in_message"], placed.stored("hangup_in_message")
    assert (stored.rating.level, stored.rating.reason_tags) == ("dissatisfied", ["other"])
    assert Path(stored.rating.voice_message_file).is_file()  # Record()'s k option: kept on a hangup
    assert 3.0 <= stored.rating.voice_message_seconds <= 3.8
    assert (stored.end_reason, stored.progress) == ("caller_hangup", "voice_message")
    assert call.agistatus == "HANGUP"


# -- bad input from the PBX's side: the call goes on, the log says which call and why --------------------


def test_a_missing_prompt_is_logged_and_the_call_goes_on(placed: Placed) -> None:
    call, stored = placed.calls["missing_prompt"], placed.stored("missing_prompt")
    assert (stored.rating.level, stored.end_reason) == ("satisfied", "completed")
    assert call.commands[-3:] == ["STREAM FILE hotline-eval-missing/12345/thanks ", "CHANNEL STATUS", "HANGUP"]
    assert f"call {call.uniqueid}: sound hotline-eval-missing/12345/thanks not played: STREAM FILE failed" in placed.log
    assert call.agistatus == "FAILURE"  # what Asterisk reports after a failed command on a live channel


@pytest.mark.parametrize("name", ["full_disk", "read_only_disk"])
def test_a_voice_message_asterisk_cannot_write_is_logged_and_the_rest_kept(placed: Placed, name: str) -> None:
    if not placed.disks:
        pytest.skip("this host may not mount a tmpfs: no full or read-only disk to record onto")
    call, stored = placed.calls[name], placed.stored(name)
    assert (stored.rating.level, stored.rating.reason_tags) == ("very_dissatisfied", ["attitude"])
    assert stored.rating.voice_message_file is None
    assert (stored.end_reason, stored.progress) == ("completed", "completed")
    assert heard(call, "thanks_negative")
    assert f"call {call.uniqueid}: voice message not recorded into " in placed.log
    line = next(line for line in placed.log.splitlines() if f"call {call.uniqueid}: voice message not recorded" in line)
    assert "RECORD_STATUS=ERROR" in line  # Record() could not make the folder, or write the file


# -- the simulator agrees with the real PBX ---------------------------------------------------------------


@pytest.mark.parametrize("name", SIMULATED)
def test_the_simulated_channel_runs_each_call_as_the_real_pbx_does(placed: Placed, name: str) -> None:
    call, stored = placed.calls[name], placed.stored(name)
    result, simulated = placed.simulated[name]
    assert simulated is not None and not result.error and not result.channel.violations, result.error
    simulated_commands = [" ".join(words) for words in result.channel.commands]
    real = [c.replace(call.uniqueid, "UID").replace(str(placed.pbx.voice_messages), "DIR") for c in call.commands]
    simulated_commands = [c.replace(result.uniqueid, "UID").replace(str(placed.pbx.voice_messages), "DIR")
                          for c in simulated_commands]
    assert real == simulated_commands, f"\nreal PBX:  {real}\nsimulator: {simulated_commands}\n{call}"
    assert result.agistatus == call.agistatus
    assert (simulated.end_reason, simulated.progress, simulated.menu_plays) == (
        stored.end_reason, stored.progress, stored.menu_plays)
    if stored.rating is None:
        assert simulated.rating is None
        return
    assert (simulated.rating.level, simulated.rating.channel, simulated.rating.reason_tags) == (
        stored.rating.level, stored.rating.channel, stored.rating.reason_tags)
    assert (simulated.rating.voice_message_file is None) == (stored.rating.voice_message_file is None)
    if stored.rating.voice_message_seconds is not None:
        # The real caller starts a moment after the beep (tests/real_pbx.py THINK): the file has that much more.
        lead_in = stored.rating.voice_message_seconds - simulated.rating.voice_message_seconds
        assert 0.0 <= lead_in <= 0.8
