"""The command line as a newcomer and a supervisor use it: demo, db upgrade, export, prompts build."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from ivr.prompts import (
    SOUNDS_DIR,
    PromptBuildError,
    build_prompts,
    chinese_number,
    date_prompts,
    korean_number,
    sound_lengths,
    speakable,
)
from rating_core.rules.rulebook import PROMPT_NAMES
from real_pbx import free_port
from waiting import HANG

CLI = str(Path(sys.executable).with_name("hotline-eval"))


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path / "home"))
    env.pop("DATABASE_URL", None)
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=300)


def test_demo_shows_the_whole_loop(tmp_path: Path) -> None:
    done = run(tmp_path, "demo", "--calls", "40", "--port", "0", "--web-port", "0")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "store check: 0 mismatch(es)" in done.stdout
    assert "errors: 0" in done.stdout
    assert "未评价" in done.stdout
    assert (tmp_path / "home" / "hotline-eval.db").exists()  # the embedded default
    # Spoken ratings on the Korean line, heard by the real Vosk model (the test extra installs it).
    assert "said '매우 만족'      heard '매우 만족'" in done.stdout
    assert re.search(r"said '오 \(五\)'\s+heard '오' \(confidence [01]\.\d\d\) "
                     r"-> 非常不满意, channel speech", done.stdout)
    # The callback half: every 差评 became a task, was dialled through the simulated AMI, and landed;
    # answered ones ran the automated verification, whose answers closed the satisfied citizens' tasks.
    assert "the dialer placed" in done.stdout and re.search(r" answered\s+核实期限", done.stdout)
    assert "已办结" in done.stdout and "已解决、满意" in done.stdout
    # 补充评价: the callers who did not rate got one SMS each, and the first one's link gave a 差评 with a callback.
    sent = re.search(r"补充评价: (\d+) SMS sent", done.stdout)
    assert sent and int(sent[1]) > 0
    assert re.search(r"rated 不满意 \(HTTP 200\): stored as channel supplementary, 主动评价, callback task #\d+ opened",
                     done.stdout), done.stdout[-1500:]


def test_callbacks_list_and_a_calendar_override(tmp_path: Path) -> None:
    assert run(tmp_path, "demo", "--calls", "30", "--port", "0", "--web-port", "0").returncode == 0
    done = run(tmp_path, "callbacks", "list", "--format", "jsonl")
    assert done.returncode == 0, done.stderr
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert rows and all(row["level"] in ("dissatisfied", "very_dissatisfied") for row in rows)
    assert all("****" in row["number"] for row in rows if row["number"])  # masked unless asked
    dialled = [row for row in rows if row["attempts"]]
    assert dialled and all(row["attempts"][0]["channel_id"].startswith(f"cb-{row['task_id']}-1-") for row in dialled)
    assert {"verify_by", "escalated_at", "appeal_file_by", "history", "overdue"} <= set(rows[0])
    verify_by = rows[0]["verify_by"][:10]
    done = run(tmp_path, "calendar", "set", verify_by, "--holiday", "--note", "test")
    assert done.returncode == 0 and "is now a holiday" in done.stdout, done.stderr
    bad = run(tmp_path, "callbacks", "run-due", "--now", "yesterday")
    assert bad.returncode == 2 and "not an ISO time" in bad.stderr


def test_upgrade_then_export(tmp_path: Path) -> None:
    assert run(tmp_path, "db", "upgrade").returncode == 0
    assert run(tmp_path, "demo", "--calls", "10", "--port", "0", "--web-port", "0").returncode == 0
    done = run(tmp_path, "ratings", "export", "--format", "jsonl")
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 10 + 3  # the simulated callers, and the demo's three spoken ratings
    assert [r["heard_text"] for r in rows if r["channel"] == "speech"] == ["매우 만족", "만족", "오"]
    assert {"uniqueid", "level_name", "channel", "reason_tags", "agent_id", "queue", "case_number",
            "started_at", "progress"} <= set(rows[0])
    csv_out = run(tmp_path, "ratings", "export", "--format", "csv", "--since", "2999-01-01").stdout
    assert csv_out.splitlines()[0].startswith("uniqueid,linkedid,hotline") and len(csv_out.splitlines()) == 1


def test_export_rejects_a_bad_time(tmp_path: Path) -> None:
    done = run(tmp_path, "ratings", "export", "--since", "yesterday")
    assert done.returncode == 2 and "not an ISO time" in done.stderr


def test_speech_recordings_must_name_the_folder_as_asterisk_does(tmp_path: Path) -> None:
    done = run(tmp_path, "agi", "--speech-recordings", "spool/speech=/mnt/asterisk/speech")
    assert done.returncode == 2 and "'spool/speech' is not an absolute path on the Asterisk host" in done.stderr


def test_broken_rules_file_stops_with_a_message(tmp_path: Path) -> None:
    bad = tmp_path / "rules.yaml"
    bad.write_text("hotlines: {}\n", encoding="utf-8")
    env = dict(os.environ, HOTLINE_EVAL_RULES=str(bad), HOTLINE_EVAL_HOME=str(tmp_path))
    done = subprocess.run([CLI, "ratings", "export"], capture_output=True, text=True, env=env)
    assert done.returncode == 1 and "defines no hotline" in done.stderr


def test_prompts_build_makes_asterisk_ready_wavs(tmp_path: Path) -> None:
    done = run(tmp_path, "prompts", "build", "--out", str(tmp_path / "sounds"), "--hotline", "12333")
    assert done.returncode == 0, done.stderr
    built = sorted(p.name for p in (tmp_path / "sounds" / "12333").glob("*.wav"))
    assert built == sorted(f"{n}.wav" for n in PROMPT_NAMES)
    dates = {p.stem for p in (tmp_path / "sounds" / "dates").glob("*.wav")}
    assert dates == {f"month_{m}" for m in range(1, 13)} | {f"day_{d}" for d in range(1, 32)}
    with wave.open(str(tmp_path / "sounds" / "12333" / "menu.wav")) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2)
        assert wav.getnframes() > 8000 * 5  # a long menu, not an empty file


def test_unknown_hotline_for_prompts(tmp_path: Path) -> None:
    done = run(tmp_path, "prompts", "build", "--out", str(tmp_path / "s"), "--hotline", "110")
    assert done.returncode == 1 and "unknown hotline" in done.stderr


def test_shipped_sounds_cover_every_prompt(rules) -> None:
    lengths = sound_lengths(SOUNDS_DIR)
    for profile in rules.hotlines.values():
        for name in profile.prompts:
            assert lengths.get(profile.sound(name), 0) > 0.5, f"{profile.sound(name)} missing or empty"
        for month, day in ((1, 1), (12, 31)):
            for sound in profile.verification.date_sounds(month, day):
                assert lengths.get(sound, 0) > 0.3, f"{sound} missing or empty"
    for path in SOUNDS_DIR.glob("*/*.wav"):
        with wave.open(str(path)) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (8000, 1, 2), path


@pytest.mark.parametrize(("n", "spoken"), [(1, "一"), (10, "十"), (15, "十五"), (20, "二十"), (31, "三十一")])
def test_dates_are_spoken_as_numbers(n: int, spoken: str) -> None:
    assert chinese_number(n) == spoken


@pytest.mark.parametrize(("n", "spoken"), [(1, "일"), (10, "십"), (15, "십오"), (20, "이십"), (31, "삼십일")])
def test_korean_dates_are_spoken_in_sino_korean(n: int, spoken: str) -> None:
    assert korean_number(n) == spoken


def test_date_fragments_follow_the_prompt_voice() -> None:
    assert (date_prompts()["month_11"], date_prompts()["day_20"]) == ("十一月", "二十日")
    korean = date_prompts("ko")
    assert (korean["month_11"], korean["day_20"], korean["month_6"], korean["month_10"]) == (
        "십일월", "이십일", "유월", "시월")  # 6 and 10 drop a sound when said as months
    with pytest.raises(PromptBuildError, match="no spoken dates for prompt voice 'fr'"):
        date_prompts("fr")


def test_two_voices_cannot_share_a_date_folder(rules, tmp_path: Path) -> None:
    """A Korean hotline left on the Mandarin dates would say 十一月 in the middle of Korean."""
    korean = rules.hotlines["12345-ko"]
    shared = korean.model_copy(update={"verification": rules.hotlines["12345"].verification})
    with pytest.raises(PromptBuildError, match="12345-ko: date_sound_dir hotline-eval/dates is spoken in"):
        build_prompts([rules.hotlines["12345"], shared], tmp_path)
    assert not list(tmp_path.iterdir())  # refused before anything was synthesised


@pytest.mark.parametrize(("text", "spoken"), [("按1", "按一"), ("12345热线", "幺二三四五热线"),
                                              ("星号键*", "星号键星号")])
def test_digits_are_read_in_mandarin(text: str, spoken: str) -> None:
    assert speakable(text) == spoken


def test_the_demo_ends_with_the_web_tool_filled_by_the_loop(tmp_path: Path) -> None:
    """`make demo`'s last step: the web tool serves what the loop left; an agent signs in and sees the queue."""
    import http.cookiejar
    import re
    import signal
    import urllib.error
    import urllib.parse
    import urllib.request

    port = free_port()
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path / "home"))
    env.pop("DATABASE_URL", None)
    proc = subprocess.Popen([CLI, "demo", "--calls", "30", "--port", "0", "--web-port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if "demo-unit" in line:
                break
        output = "".join(lines)
        assert f"9. the web tool: http://127.0.0.1:{port}/" in output, output[-2000:]
        password = re.search(r"demo-agent\s+密码 (\S+)", output).group(1)
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(http.cookiejar.CookieJar()))
        base = f"http://127.0.0.1:{port}"
        login_page = None
        while login_page is None:  # the server starts right after printing; a demo that died fails below
            assert proc.poll() is None, f"the demo exited ({proc.returncode}) before its web tool answered"
            try:
                login_page = opener.open(f"{base}/login", timeout=60).read().decode()
            except OSError:
                time.sleep(0.1)
        csrf = re.search(r'name="csrf_token" type="hidden" value="([^"]+)"', login_page).group(1)
        form = urllib.parse.urlencode({"username": "demo-agent", "password": password, "csrf_token": csrf}).encode()
        queue = opener.open(f"{base}/login", data=form, timeout=10).read().decode()
        assert "回访队列" in queue and 'data-task="' in queue  # the loop's open 差评, by deadline
        # The SMS links the demo printed open the citizen's page here: the first was used by the demo's citizen.
        links = re.findall(rf"{re.escape(base)}/r/[A-Za-z0-9_-]+", output)
        assert len(links) >= 2, output[-2000:]
        with pytest.raises(urllib.error.HTTPError) as used:
            opener.open(links[0], timeout=10)
        assert used.value.code == 410
        assert "请为本次服务打分" in opener.open(links[1], timeout=10).read().decode()
        # The counts of the loop that just ran, for Prometheus on this host: the calls rated, the tasks stored.
        assert f"metrics (Prometheus, from this host only): {base}/metrics" in output
        scraped = opener.open(f"{base}/metrics", timeout=10).read().decode()
        rated = sum(float(line.rsplit(" ", 1)[1]) for line in scraped.splitlines()
                    if line.startswith("hotline_eval_ratings_total{"))
        assert rated > 0, scraped[:2000]
        assert re.search(r'^hotline_eval_callback_tasks\{hotline="12345",state="[a-z_]+"\} [1-9]', scraped, re.M)
    finally:
        proc.send_signal(signal.SIGINT)
        # No time limit of its own: Ctrl-C must end the demo cleanly, however busy the machine (the bound is
        # only there so that a demo which never stops fails the test instead of hanging the suite).
        assert proc.wait(timeout=HANG) == 0


def test_figures_rollup_by_hand(tmp_path: Path) -> None:
    assert run(tmp_path, "db", "upgrade").returncode == 0
    done = run(tmp_path, "figures", "rollup", "--days", "3")
    assert done.returncode == 0 and "rollups: 3 day(s) rebuilt" in done.stdout, done.stderr
    again = run(tmp_path, "figures", "rollup")
    assert again.returncode == 0 and "rollups: 0 day(s) rebuilt" in again.stdout


def test_webhook_endpoints_on_the_command_line(tmp_path: Path) -> None:
    assert run(tmp_path, "db", "upgrade").returncode == 0
    bad = run(tmp_path, "webhooks", "add", "https://platform.example/hooks", "--events", "rating.sold")
    assert bad.returncode == 1 and "未知：rating.sold" in bad.stderr
    done = run(tmp_path, "webhooks", "add", "https://platform.example/hooks", "--events",
               "rating.created,complaint.verified")
    assert done.returncode == 0 and "secret (give it to the receiver" in done.stdout and "whsec_" in done.stdout
    assert "(profile gbt39046)" in done.stdout  # the national standard unless another is chosen
    native = run(tmp_path, "webhooks", "add", "https://other.example/hooks", "--events", "*", "--profile", "native")
    assert native.returncode == 0 and "(profile native)" in native.stdout
    unknown = run(tmp_path, "webhooks", "add", "https://x.example/hooks", "--events", "*", "--profile", "gd")
    assert unknown.returncode == 1 and "报文格式“gd”无法使用：unknown profile 'gd'" in unknown.stderr
    listed = run(tmp_path, "webhooks", "list")
    assert ("https://platform.example/hooks  active  profile=gbt39046  events=complaint.verified,rating.created"
            in listed.stdout)
    moved = run(tmp_path, "webhooks", "set-profile", "2", "zj-example")
    assert moved.returncode == 0 and "endpoint 2: profile zj-example" in moved.stdout
    assert "https://other.example/hooks  active  profile=zj-example" in run(tmp_path, "webhooks", "list").stdout
    assert run(tmp_path, "webhooks", "replay").returncode == 2  # says what to give
    assert "0 delivery(ies) queued again" in run(tmp_path, "webhooks", "replay", "--dead").stdout
    rotated = run(tmp_path, "webhooks", "rotate", "1")
    assert rotated.returncode == 0 and "new secret" in rotated.stdout


def test_lifecycle_run_gives_defaults_to_old_unrated_calls(tmp_path: Path) -> None:
    assert run(tmp_path, "demo", "--calls", "20", "--port", "0", "--web-port", "0").returncode == 0
    unrated = sum(1 for row in map(json.loads,
                                   run(tmp_path, "ratings", "export", "--format", "jsonl").stdout.splitlines())
                  if row["level"] is None)
    assert unrated > 0
    assert "0 call(s) given" in run(tmp_path, "lifecycle", "run").stdout  # too soon
    done = run(tmp_path, "lifecycle", "run", "--now", "2099-01-01T00:00:00+08:00")
    assert done.returncode == 0 and f"{unrated} call(s) given the default rating" in done.stdout, done.stderr
    assert "not an ISO time" in run(tmp_path, "lifecycle", "run", "--now", "next week").stderr


def test_dead_letters_are_listed_and_replay_spool_applies_a_dead_journal(tmp_path: Path) -> None:
    """A journal left by a server that is gone, with one event the store refuses: `db replay-spool` applies
    the rest and says how much it read; `db dead-letters` shows the refused one and why."""
    from datetime import datetime, timezone

    from rating_core.events.call_events import CallStarted, RatingGiven
    from rating_core.events.journal import Journal

    assert run(tmp_path, "db", "upgrade").returncode == 0
    at = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
    journal = Journal(tmp_path / "home" / "spool", min_free_bytes=0)
    journal.open()
    journal.append([CallStarted("cli.1", "12345", at), RatingGiven("ghost.9", "satisfied", "dtmf", at),
                    RatingGiven("cli.1", "very_satisfied", "dtmf", at)])
    journal.close(applied=False)  # as a killed server leaves it
    replayed = run(tmp_path, "db", "replay-spool")
    assert replayed.returncode == 0 and "replayed 3 journal line(s)" in replayed.stdout, replayed.stderr
    listed = run(tmp_path, "db", "dead-letters")
    assert listed.returncode == 0
    assert "rating_given call ghost.9  UnknownCall: no call with uniqueid 'ghost.9'" in listed.stdout
    assert "1 dead letter(s)" in listed.stdout


@pytest.mark.postgres
def test_db_upgrade_waits_for_a_database_that_starts_late(tmp_path: Path) -> None:
    """The migration unit at boot: PostgreSQL is not accepting connections yet, then is; the migration waits
    for it inside the one start (`--wait`) instead of failing and leaving every unit that requires it down."""
    import socket
    import threading

    from sqlalchemy.engine import make_url

    from conftest import POSTGRES_URL, _create_database, worker_database

    name = worker_database("hotline_eval_late")
    try:
        _create_database(name)
    except Exception as exc:  # the server's own words, whatever they are
        if os.environ.get("REQUIRE_POSTGRES"):
            pytest.fail(f"PostgreSQL required but unusable: {exc}")
        pytest.skip(f"PostgreSQL unusable: {exc}")
    real = make_url(POSTGRES_URL)
    port = free_port()  # a port nobody listens on yet: the database "still starting"
    late = real.set(host="127.0.0.1", port=port, database=name).render_as_string(hide_password=False)
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path), DATABASE_URL=late)
    migration = subprocess.Popen([CLI, "db", "upgrade", "--wait", str(int(HANG))], env=env, text=True,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert migration.stderr is not None
    waiting = migration.stderr.readline()
    assert "trying again in" in waiting, waiting
    # The database comes up: a relay on that port to the real server.
    relay = socket.create_server(("127.0.0.1", port))

    def pipe(source: socket.socket, target: socket.socket) -> None:
        with source, target:
            while data := source.recv(65536):
                target.sendall(data)

    def serve() -> None:
        while True:
            try:
                client, _ = relay.accept()
            except OSError:
                return
            upstream = socket.create_connection((real.host or "127.0.0.1", real.port or 5432))
            threading.Thread(target=pipe, args=(client, upstream), daemon=True).start()
            threading.Thread(target=pipe, args=(upstream, client), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    try:
        out, err = migration.communicate(timeout=HANG)
    finally:
        relay.close()
    assert migration.returncode == 0, err[-2000:]
    assert f"/{name} is at head" in out
    _create_database(name)  # emptied again: the next run starts from nothing too


def test_db_upgrade_against_a_database_that_never_answers_says_why_in_one_line(tmp_path: Path) -> None:
    port = free_port()
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path),
               DATABASE_URL=f"postgresql+psycopg://nobody:secret@127.0.0.1:{port}/none")
    done = subprocess.run([CLI, "db", "upgrade", "--wait", "1"], capture_output=True, text=True, env=env,
                          timeout=HANG)
    assert done.returncode == 1
    errors = [line for line in done.stderr.splitlines() if " ERROR " in line]
    assert len(errors) == 1 and f"127.0.0.1:{port}/none: connection failed" in errors[0], done.stderr
    assert "Traceback" not in done.stderr and "secret" not in done.stderr
