"""The settings: read from the environment once, where a process starts, and passed down to what needs them."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine, select

from rating_core.events.call_events import CallStarted, RatingGiven
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import Rules
from rating_core.rules.settings import DEFAULT_REDIS_URL, Settings
from rating_core.store.models import OutboxEvent
from web import create_app

CLI = str(Path(sys.executable).with_name("hotline-eval"))
# Secrets strong enough to pass the check at start (32 characters or more, not a pattern).
KEY = "Zq8-vN2pLx7RtY4wKs9BmE3hUj6CdF1a"
NEW, OLD = "whsec_c2VjcmV0LW9mLXRoZS1wbGF0Zm9ybS1uZXc=", "whsec_c2VjcmV0LW9mLXRoZS1wbGF0Zm9ybS1vbGQ="
ONE, TWO = "pull-token-one-7fQ2xLm9Rv4KpW8sNz", "pull-token-two-3hJ6cYb1Tg5DqA0eUi"
SMS = "sms-gateway-token-Yk2Wq7Lp4Xv9Nr3Tz"
VARIABLES = ("HOTLINE_EVAL_HOME", "DATABASE_URL", "HOTLINE_EVAL_SPOOL", "HOTLINE_EVAL_MODELS", "HOTLINE_EVAL_RULES",
             "HOTLINE_EVAL_SCORING", "HOTLINE_EVAL_REGION_CODE", "REDIS_URL", "HOTLINE_EVAL_SECRET_KEY",
             "HOTLINE_EVAL_INSECURE_COOKIES", "HOTLINE_EVAL_REPORT_FROM", "HOTLINE_EVAL_REPORT_TO",
             "HOTLINE_EVAL_INBOUND_SECRET", "HOTLINE_EVAL_INBOUND_SECRET_PREVIOUS", "HOTLINE_EVAL_PULL_TOKENS",
             "HOTLINE_EVAL_SMS_URL", "HOTLINE_EVAL_SMS_TOKEN", "HOTLINE_EVAL_PUBLIC_URL",
             "AMI_HOST", "AMI_PORT", "AMI_USERNAME", "AMI_SECRET")


@pytest.fixture
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_each_variable_lands_in_its_setting(clean_environment: pytest.MonkeyPatch) -> None:
    values = {"HOTLINE_EVAL_HOME": "/srv/eval", "DATABASE_URL": "postgresql+psycopg://eval@db/eval",
              "HOTLINE_EVAL_SPOOL": "/var/spool/eval", "HOTLINE_EVAL_MODELS": "/opt/models",
              "HOTLINE_EVAL_RULES": "/etc/eval/rules.yaml", "HOTLINE_EVAL_SCORING": "/etc/eval/scoring.yaml",
              "HOTLINE_EVAL_REGION_CODE": "370300", "REDIS_URL": "redis://cache:6379/2",
              "HOTLINE_EVAL_SECRET_KEY": KEY, "HOTLINE_EVAL_INSECURE_COOKIES": "1",
              "HOTLINE_EVAL_REPORT_FROM": "淄博市12345热线", "HOTLINE_EVAL_REPORT_TO": "市人社局",
              "HOTLINE_EVAL_INBOUND_SECRET": NEW, "HOTLINE_EVAL_INBOUND_SECRET_PREVIOUS": OLD,
              "HOTLINE_EVAL_PULL_TOKENS": f" {ONE}, {TWO} ,,", "HOTLINE_EVAL_SMS_URL": "https://sms.example/send",
              "HOTLINE_EVAL_SMS_TOKEN": SMS, "HOTLINE_EVAL_PUBLIC_URL": "https://pj.example",
              "AMI_HOST": "pbx", "AMI_PORT": "5039", "AMI_USERNAME": "dialer", "AMI_SECRET": "s"}
    for name, value in values.items():
        clean_environment.setenv(name, value)
    given = Settings()
    assert (given.home, given.database_url, given.spool_dir, given.models_dir) == (
        Path("/srv/eval"), "postgresql+psycopg://eval@db/eval", Path("/var/spool/eval"), Path("/opt/models"))
    assert (given.rules_file, given.scoring_file, given.region_code, given.redis_url) == (
        Path("/etc/eval/rules.yaml"), Path("/etc/eval/scoring.yaml"), "370300", "redis://cache:6379/2")
    assert (given.secret_key, given.insecure_cookies, given.report_from, given.report_to) == (
        KEY, True, "淄博市12345热线", "市人社局")
    assert given.inbound_secrets == (NEW, OLD) and given.pull_tokens == (ONE, TWO)
    assert (given.sms_url, given.sms_token, given.public_url) == ("https://sms.example/send", SMS, "https://pj.example")
    assert (given.ami_host, given.ami_port, given.ami_username, given.ami_secret) == ("pbx", 5039, "dialer", "s")
    assert KEY not in repr(given) and NEW not in repr(given)  # secrets stay out of logs


def test_unset_and_empty_variables_take_the_defaults(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("DATABASE_URL", "")
    clean_environment.setenv("HOME", "/root-of-someone-else")  # the field ``home`` is not read from $HOME
    given = Settings()
    assert given.home == Path("var") and given.database_url == "sqlite:///var/hotline-eval.db"
    assert (given.spool_dir, given.models_dir) == (Path("var/spool"), Path("var/models"))
    assert (given.rules_file, given.region_code, given.redis_url) == (None, None, DEFAULT_REDIS_URL)
    assert (given.insecure_cookies, given.inbound_secrets, given.pull_tokens) == (False, (), ())


def test_the_region_code_reaches_every_payload(sqlite_engine: Engine, rules: Rules) -> None:
    store = RatingStore(sqlite_engine, rules, region_code="370300")
    at = datetime(2026, 11, 20, 1, 0, tzinfo=timezone.utc)
    store.apply([CallStarted(uniqueid="1795316400.1", hotline="12345", at=at, caller_number="13800000000"),
                 RatingGiven("1795316400.1", "very_dissatisfied", "dtmf", at)])
    with store.sessions() as session:
        payloads = [event.payload for event in session.scalars(select(OutboxEvent))]
    assert payloads and {payload["rating"]["region_code"] for payload in payloads} == {"370300"}


def test_the_web_tool_takes_its_config_from_the_settings(store: RatingStore, tmp_path: Path) -> None:
    given = Settings(home=tmp_path, secret_key=KEY, insecure_cookies=True, inbound_secret=NEW,
                     pull_tokens=(ONE,), report_to="市人社局")
    app = create_app(store, settings=given)
    assert (app.config["SECRET_KEY"], app.config["SESSION_COOKIE_SECURE"]) == (KEY, False)
    assert (app.config["INBOUND_SECRETS"], app.config["PULL_TOKENS"]) == ((NEW,), (ONE,))
    assert (app.config["REPORT_ADDRESSEE"], app.config["TRANSCODE_DIR"]) == ("市人社局", str(tmp_path / "transcoded"))


def test_a_malformed_variable_is_a_clear_error_before_anything_starts(tmp_path: Path) -> None:
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path), AMI_PORT="五〇三八")
    done = subprocess.run([CLI, "db", "upgrade"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1
    assert "configuration:" in done.stderr and "AMI_PORT" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "hotline-eval.db").exists()


@pytest.mark.parametrize(("variable", "value", "why"), [
    ("HOTLINE_EVAL_SECRET_KEY", "x", "too short (1 characters"),
    ("HOTLINE_EVAL_SECRET_KEY", "k" * 40, "fewer than 8 different characters"),
    ("HOTLINE_EVAL_SECRET_KEY", "0123456789abcdef" * 2, "repeats a short pattern"),
    ("HOTLINE_EVAL_SECRET_KEY", "abcdefghijklmnopqrstuvwxyz0123456", "run of consecutive characters"),
    ("HOTLINE_EVAL_INBOUND_SECRET", "whsec_short", "too short"),
    ("HOTLINE_EVAL_INBOUND_SECRET_PREVIOUS", "whsec_" + "A" * 40, "fewer than 8"),
    ("HOTLINE_EVAL_NUMBER_KEY", "changeme", "too short"),
    ("HOTLINE_EVAL_PULL_TOKENS", f"{ONE},weak", "too short"),
])
def test_a_weak_secret_stops_the_process_naming_the_variable_not_the_value(
        clean_environment: pytest.MonkeyPatch, variable: str, value: str, why: str) -> None:
    clean_environment.setenv(variable, value)
    with pytest.raises(ValidationError) as refused:
        Settings()
    message = str(refused.value)
    assert variable in message and why in message
    assert value.split(",")[-1] not in message or len(value) < 8  # a letter or two occurs in any message


def test_a_short_sms_token_is_the_gateways_to_choose(clean_environment: pytest.MonkeyPatch) -> None:
    clean_environment.setenv("HOTLINE_EVAL_SMS_TOKEN", "t0k")
    assert Settings().sms_token == "t0k"


def test_the_command_refuses_to_start_with_a_one_character_secret_key(tmp_path: Path) -> None:
    env = dict(os.environ, HOTLINE_EVAL_HOME=str(tmp_path), HOTLINE_EVAL_SECRET_KEY="k")
    done = subprocess.run([CLI, "db", "upgrade"], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert "configuration:" in done.stderr and "HOTLINE_EVAL_SECRET_KEY is too short" in done.stderr
    assert not (tmp_path / "hotline-eval.db").exists()
