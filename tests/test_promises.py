"""What a 差评 caller is promised is the callback policy's verify_within, in the prompt's language (issue 18.6).

The thanks after a 差评 says when the callback comes; the callback loop keeps ``callback.verify_within``. The
prompt says it through ``{callback_within}``, a prompt that writes a limit out is refused unless it is the
policy's, and sounds built for an earlier text are rebuilt, or refused where a recording would say the old one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import wave
from pathlib import Path
from typing import Any

import pytest
import yaml

from ivr.prompts import MANIFEST, SOUNDS_DIR, PromptBuildError, build_prompts, stale_sounds
from rating_core.rules.promises import chinese_count
from rating_core.rules.rulebook import DEFAULT_RULES_FILE, HotlineProfile, RulesError, parse_rules
from waiting import HANG

CLI = str(Path(sys.executable).with_name("hotline-eval"))
# What the two lines say today, under the shipped 48 hours.
SPOKEN_TODAY = {
    "12345": "您的意见已记录，我们将在四十八小时内回访核实。感谢您的评价，再见。",
    "12345-ko": "의견이 접수되었습니다. 48시간 안에 다시 연락드리겠습니다. 감사합니다.",
}
ONE_WORKING_DAY = {"amount": 1, "unit": "working_days"}


def shipped() -> dict[str, Any]:
    return yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))


def with_policy(verify_within: dict[str, Any], document: dict[str, Any] | None = None) -> dict[str, Any]:
    document = document or shipped()
    document["callback"]["verify_within"] = verify_within
    return document


def with_prompt(hotline: str, text: str, document: dict[str, Any] | None = None) -> dict[str, Any]:
    document = document or shipped()
    document["hotlines"][hotline]["prompts"]["thanks_negative"] = text
    return document


def test_the_shipped_rules_say_what_is_spoken_today(rules) -> None:
    """No change for a deployment on 48 hours, though the text now comes from the policy."""
    raw = shipped()["hotlines"]
    for code, spoken in SPOKEN_TODAY.items():
        assert "{callback_within}" in raw[code]["prompts"]["thanks_negative"]
        assert rules.hotline(code).prompts["thanks_negative"] == spoken
    assert rules.hotline("12333").prompts["thanks_negative"] == ("您的意见已记录，工作人员将尽快与您联系。"
                                                                 "感谢您的评价，再见。")


def test_one_working_day_is_promised_in_each_language() -> None:
    rules = parse_rules(with_policy(ONE_WORKING_DAY))
    assert rules.hotline("12345").prompts["thanks_negative"] == (
        "您的意见已记录，我们将在一个工作日内回访核实。感谢您的评价，再见。")
    assert rules.hotline("12345-ko").prompts["thanks_negative"] == (
        "의견이 접수되었습니다. 1영업일 안에 다시 연락드리겠습니다. 감사합니다.")


@pytest.mark.parametrize(("limit", "chinese", "korean"), [
    ({"amount": 2, "unit": "working_days"}, "两个工作日内", "2영업일 안에"),
    ({"amount": 24, "unit": "hours"}, "二十四小时内", "24시간 안에"),
    ({"amount": 2, "unit": "hours"}, "两小时内", "2시간 안에"),
    ({"amount": 15, "unit": "days"}, "十五天内", "15일 안에"),
    ({"amount": 30, "unit": "minutes"}, "三十分钟内", "30분 안에"),
])
def test_every_unit_is_worded_from_the_data(limit: dict[str, Any], chinese: str, korean: str) -> None:
    rules = parse_rules(with_policy(limit))
    assert f"我们将在{chinese}回访核实" in rules.hotline("12345").prompts["thanks_negative"]
    assert f"{korean} 다시 연락드리겠습니다" in rules.hotline("12345-ko").prompts["thanks_negative"]


@pytest.mark.parametrize(("n", "words"), [(1, "一"), (2, "两"), (10, "十"), (12, "十二"), (48, "四十八"),
                                          (100, "一百"), (105, "一百零五"), (120, "一百二十"), (1005, "一千零五")])
def test_counts_are_said_in_chinese_words(n: int, words: str) -> None:
    """The pinyin voice reads "48" as 四八, so the Mandarin promise is written in words."""
    assert chinese_count(n) == words


@pytest.mark.parametrize(("hotline", "text", "quoted", "language"), [
    ("12345", "您的意见已记录，我们将在二十四小时内回访核实。", "二十四小时", "zh-CN"),
    ("12345", "您的意见已记录，我们将在3个工作日内回访核实。", "3个工作日", "zh-CN"),
    ("12345-ko", "의견이 접수되었습니다. 24시간 이내에 다시 연락드리겠습니다.", "24시간", "ko"),
    ("12345-ko", "의견이 접수되었습니다. 1영업일 안에 다시 연락드리겠습니다.", "1영업일", "ko"),
    ("12345", "您的意见已记录，我们将在１２小时内回访核实。", "12小时", "zh-CN"),  # fullwidth digits
])
def test_a_written_out_limit_that_is_not_the_policy_is_refused(hotline: str, text: str, quoted: str,
                                                               language: str) -> None:
    with pytest.raises(RulesError) as refused:
        parse_rules(with_prompt(hotline, text))
    assert str(refused.value) == (
        f"hotline {hotline}, prompt thanks_negative ({language}) promises “{quoted}”, but the callback policy's "
        "verify_within is 48小时; write {callback_within} to say the policy's limit")


def test_the_old_literal_promise_is_refused_once_the_policy_changes() -> None:
    """A deployment that kept 四十八小时内 in its own rules file and moved to one working day."""
    document = with_prompt("12345", SPOKEN_TODAY["12345"], with_policy(ONE_WORKING_DAY))
    with pytest.raises(RulesError, match="prompt thanks_negative \\(zh-CN\\) promises “四十八小时”, but the callback "
                                         "policy's verify_within is 1个工作日"):
        parse_rules(document)


@pytest.mark.parametrize("text", ["我们将在四十八小时内回访。", "我们将在两天内回访。", "我们将在48小时之内回访。"])
def test_a_written_out_limit_that_is_the_policy_is_accepted(text: str) -> None:
    assert parse_rules(with_prompt("12345", text)).hotline("12345").prompts["thanks_negative"] == text


@pytest.mark.parametrize("text", ["请按1。", "感谢您致电12345热线，再见。", "您于3月15日来电。", "请在3月15日内办理。",
                                  "이 시간 내에 연락드리겠습니다."])
def test_numbers_that_are_no_time_limit_are_left_alone(text: str) -> None:
    assert parse_rules(with_prompt("12345", text)).hotline("12345").prompts["thanks_negative"] == text


def test_an_unknown_placeholder_or_voice_is_refused() -> None:
    with pytest.raises(RulesError, match=r"hotline 12345, prompt thanks_negative \(zh-CN\): unknown placeholder"):
        parse_rules(with_prompt("12345", "我们将在{callback_whithin}回访。"))
    document = shipped()
    del document["time_limit_wording"]["ko"]
    with pytest.raises(RulesError, match="hotline 12345-ko, prompt thanks_negative \\(ko\\) says {callback_within}, "
                                         "but time_limit_wording has nothing for prompt voice 'ko'"):
        parse_rules(document)


def test_the_shipped_sounds_say_the_shipped_texts(rules) -> None:
    assert stale_sounds(rules.hotlines.values(), SOUNDS_DIR) == []


def test_a_policy_change_makes_the_promise_sounds_stale() -> None:
    rules = parse_rules(with_policy(ONE_WORKING_DAY))
    stale = stale_sounds(rules.hotlines.values(), SOUNDS_DIR)
    assert [line.split(":")[0] for line in stale] == [
        str(SOUNDS_DIR / "12345" / "thanks_negative.wav"), str(SOUNDS_DIR / "12345-ko" / "thanks_negative.wav")]
    assert "一个工作日内" in stale[0] and "四十八小时内" in stale[0]


def promise_only(profile: HotlineProfile) -> HotlineProfile:
    """The profile with its one policy-bound prompt, so a build takes seconds."""
    return profile.model_copy(update={"prompts": {"thanks_negative": profile.prompts["thanks_negative"]}})


def manifest(folder: Path) -> dict[str, Any]:
    return json.loads((folder / MANIFEST).read_text(encoding="utf-8"))


def record_over(path: Path) -> bytes:
    """A centre's recording dropped in under the prompt's name (a second of silence stands for it)."""
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(8000)
        wav.writeframes(b"\0\0" * 8000)
    return path.read_bytes()


def test_prompts_build_rebuilds_a_synthetic_promise_and_guards_a_recorded_one(rules, tmp_path: Path) -> None:
    korean = promise_only(rules.hotline("12345-ko"))
    later = promise_only(parse_rules(with_policy(ONE_WORKING_DAY)).hotline("12345-ko"))
    folder, sound = tmp_path / "12345-ko", "12345-ko/thanks_negative"
    path = folder / "thanks_negative.wav"

    build_prompts([korean], tmp_path)
    assert manifest(folder)["thanks_negative"]["text"] == SPOKEN_TODAY["12345-ko"]
    build_prompts([later], tmp_path)  # a synthetic sound follows the policy
    assert manifest(folder)["thanks_negative"]["text"] == later.prompts["thanks_negative"]
    assert stale_sounds([later], tmp_path) == []

    recording = record_over(path)
    kept = build_prompts([later], tmp_path)  # its text is unchanged: the recording stays
    assert [(p.name, p.recorded) for p in kept if p.folder == "12345-ko"] == [("thanks_negative", True)]
    assert path.read_bytes() == recording

    with pytest.raises(PromptBuildError) as refused:  # the policy moves: the recording would promise the old limit
        build_prompts([korean], tmp_path)
    assert f"{path}: not made by prompts build, says “{later.prompts['thanks_negative']}”; the rules say " \
           f"“{SPOKEN_TODAY['12345-ko']}”" in str(refused.value)
    assert path.read_bytes() == recording
    assert stale_sounds([korean], tmp_path) != []

    record_over(path)  # recorded again with the new words, and named so
    build_prompts([korean], tmp_path, recorded=[sound])
    assert manifest(folder)["thanks_negative"] == {"text": SPOKEN_TODAY["12345-ko"], "recorded": True,
                                                   "sha256": manifest(folder)["thanks_negative"]["sha256"]}
    assert stale_sounds([korean], tmp_path) == []


def test_a_sound_of_unknown_origin_is_not_overwritten_silently(rules, tmp_path: Path) -> None:
    """A folder built before manifests, or a recording nobody accounted for: what it says is not known."""
    (tmp_path / "12333").mkdir()
    record_over(tmp_path / "12333" / "thanks_negative.wav")
    with pytest.raises(PromptBuildError,
                       match="thanks_negative.wav: not made by prompts build, is not in its manifest"):
        build_prompts([promise_only(rules.hotline("12333"))], tmp_path)
    with pytest.raises(PromptBuildError, match="--recorded names no sound of these hotlines: 12333/menu"):
        build_prompts([promise_only(rules.hotline("12333"))], tmp_path, recorded=["12333/menu"])


def run(tmp_path: Path, document: dict[str, Any], *args: str) -> subprocess.CompletedProcess[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(document, allow_unicode=True), encoding="utf-8")
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path / "home"), HOTLINE_EVAL_RULES=str(path))
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300)


def test_prompts_build_refuses_a_contradicting_prompt(tmp_path: Path) -> None:
    document = with_prompt("12345-ko", "의견이 접수되었습니다. 24시간 안에 다시 연락드리겠습니다.")
    done = run(tmp_path, document, "prompts", "build", "--out", str(tmp_path / "sounds"), "--hotline", "12345-ko")
    assert done.returncode == 1
    assert ("hotline 12345-ko, prompt thanks_negative (ko) promises “24시간”, but the callback policy's "
            "verify_within is 48小时") in done.stderr
    assert not (tmp_path / "sounds").exists()


def test_prompts_build_and_check_follow_the_policy(tmp_path: Path) -> None:
    document = with_policy(ONE_WORKING_DAY)
    done = run(tmp_path, document, "prompts", "check")  # the shipped sounds still promise 48 hours
    assert done.returncode == 1
    assert "12345/thanks_negative.wav: says “您的意见已记录，我们将在四十八小时内回访核实。" in done.stderr
    assert "12345-ko/thanks_negative.wav: says “의견이 접수되었습니다. 48시간 안에" in done.stderr
    out = tmp_path / "sounds"
    done = run(tmp_path, document, "prompts", "build", "--out", str(out), "--hotline", "12345")
    assert done.returncode == 0, done.stderr
    assert manifest(out / "12345")["thanks_negative"]["text"] == (
        "您的意见已记录，我们将在一个工作日内回访核实。感谢您的评价，再见。")
    done = run(tmp_path, document, "prompts", "check", "--dir", str(out), "--hotline", "12345")
    assert done.returncode == 0 and "every sound says its prompt's text" in done.stdout, done.stderr


def test_the_fastagi_server_warns_at_start_of_sounds_that_promise_the_old_limit(tmp_path: Path) -> None:
    """The policy moved to one working day but nobody ran `prompts build`: the server says so as it starts (and
    still starts: a caller is better served by an old sound than by no evaluation)."""
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump(with_policy(ONE_WORKING_DAY), allow_unicode=True), encoding="utf-8")
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path / "home"), HOTLINE_EVAL_RULES=str(path))
    env.pop("DATABASE_URL", None)
    subprocess.run([CLI, "db", "upgrade"], env=env, check=True, capture_output=True, timeout=300)
    server = subprocess.Popen([CLI, "agi", "--listen", "127.0.0.1:0", "--audiosocket", "127.0.0.1:0",
                               "--speech-workers", "0"], env=env, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(HANG, server.kill)  # a server that never says it listens fails the test, not CI
    watchdog.start()
    try:
        seen: list[str] = []
        assert server.stderr is not None
        for line in server.stderr:  # ends when the server dies; the suite's timeout guards a hang
            seen.append(line)
            if "FastAGI server listening" in line:
                break
        warnings = [line for line in seen if "prompt sound out of date" in line]
        assert len(warnings) == 2, "".join(seen)
        assert any("12345/thanks_negative.wav" in line and "四十八小时" in line for line in warnings)
        assert any("12345-ko/thanks_negative.wav" in line for line in warnings)
    finally:
        watchdog.cancel()
        server.terminate()
        server.wait(timeout=60)
