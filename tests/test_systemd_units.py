"""The production install (deploy/): systemd accepts every unit, each runs a command the CLI has with options
it takes, and the environment template names the settings the processes read, and only those.

The units name the install's venv, ``/opt/hotline-eval/venv``, and ``systemd-analyze verify`` checks that each
ExecStart binary is there and executable; so they are verified as copies with that one path replaced by this
checkout's venv, every other line as shipped. Whatever verify prints (an unknown or misspelt directive, a bad
value, a missing binary or unit) fails the test: it prints nothing for a clean unit.
"""

from __future__ import annotations

import inspect
import re
import secrets
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import click
import pytest

from hotline_eval.cli import main as hotline_eval
from rating_core.rules.settings import SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
UNITS = DEPLOY / "systemd"
ENV_TEMPLATE = DEPLOY / "hotline-eval.env.example"
SYSUSERS = DEPLOY / "sysusers.d" / "hotline-eval.conf"
INSTALLED_VENV = "/opt/hotline-eval/venv"
ENV_FILE = "/etc/hotline-eval/hotline-eval.env"
USER = "hotline-eval"
# The queues a worker@ instance serves (the instance name is the queue).
WORKER_INSTANCES = ("callbacks", "transcripts")
# What the units cannot run without in production: the store, Redis (rq cron reads REDIS_URL too), the web
# tool's and the workers' signing key, the number hash key, and the dialer's AMI secret.
REQUIRED = {"DATABASE_URL", "REDIS_URL", "HOTLINE_EVAL_SECRET_KEY", "HOTLINE_EVAL_NUMBER_KEY", "AMI_SECRET"}
SERVICES = sorted(UNITS.glob("*.service"))
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")
needs_systemd_analyze = pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed")


def directives(unit: Path) -> list[tuple[str, str]]:
    """The unit's ``Key=value`` lines in order (comments and section headers left out)."""
    pairs = []
    for line in unit.read_text(encoding="utf-8").splitlines():
        if line and not line.startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            pairs.append((key.strip(), value.strip()))
    return pairs


def values(unit: Path, key: str) -> list[str]:
    return [value for k, value in directives(unit) if k == key]


def exec_starts(unit: Path) -> list[tuple[list[str], dict[str, str]]]:
    """Each ExecStart as its words, one per worker queue for the template (``%i`` filled in), with the
    ``Environment=`` of the instance's drop-ins (``NAME@instance.service.d/*.conf``)."""
    instances = WORKER_INSTANCES if "%i" in unit.read_text(encoding="utf-8") else ("",)
    return [([word.replace("%i", instance) for word in line.split()], drop_in_environment(unit, instance))
            for line in values(unit, "ExecStart") for instance in instances]


def drop_in_environment(unit: Path, instance: str) -> dict[str, str]:
    name = unit.name.replace("@.", f"@{instance}.") if instance else unit.name
    return dict(value.split("=", 1) for conf in sorted(UNITS.glob(f"{name}.d/*.conf"))
                for value in values(conf, "Environment"))


def render(target: Path) -> list[Path]:
    """The units copied into ``target`` with the install's venv replaced by the one running these tests."""
    venv = Path(sys.prefix)
    assert (venv / "bin" / "hotline-eval").exists(), "the tests must run from the venv the project is installed in"
    rendered = []
    for unit in sorted(UNITS.iterdir()):
        if unit.is_dir():  # an instance's drop-ins: systemd-analyze finds them beside the unit, by name
            shutil.copytree(unit, target / unit.name)
            continue
        text = unit.read_text(encoding="utf-8")
        if unit.suffix == ".service":
            assert INSTALLED_VENV in text, f"{unit.name} does not run from {INSTALLED_VENV}"
        (target / unit.name).write_text(text.replace(INSTALLED_VENV, str(venv)), encoding="utf-8")
        rendered.append(target / unit.name)
    return rendered


def verify(*units: Path) -> str:
    """What ``systemd-analyze verify`` says about ``units`` (empty when it finds nothing), and its exit code."""
    assert SYSTEMD_ANALYZE is not None
    done = subprocess.run([SYSTEMD_ANALYZE, "verify", "--man=no", *map(str, units)], capture_output=True,
                          text=True, timeout=120, cwd=units[0].parent)
    return f"exit {done.returncode}\n{done.stdout}{done.stderr}".strip()


# -- systemd accepts them -------------------------------------------------------------------------------


def test_every_long_running_process_has_its_unit() -> None:
    assert {unit.name for unit in UNITS.iterdir()} == {
        "hotline-eval-agi.service", "hotline-eval-worker@.service", "hotline-eval-cron.service",
        "hotline-eval-dialer.service", "hotline-eval-web.service", "hotline-eval-migrate.service",
        "hotline-eval.target", "hotline-eval-worker@callbacks.service.d", "hotline-eval-worker@transcripts.service.d"}


@needs_systemd_analyze
def test_systemd_analyze_verify_passes_on_every_unit(tmp_path: Path) -> None:
    rendered = render(tmp_path)
    assert verify(*rendered) == "exit 0"
    # The template as each queue's instance, as `systemctl enable hotline-eval-worker@callbacks` makes it.
    for queue in WORKER_INSTANCES:
        instance = tmp_path / f"hotline-eval-worker@{queue}.service"
        instance.symlink_to(tmp_path / "hotline-eval-worker@.service")
        assert verify(instance) == "exit 0", queue


@needs_systemd_analyze
def test_verify_would_see_a_broken_unit(tmp_path: Path) -> None:
    """The check above can fail: here, on this machine, verify does speak up about what it is meant to catch."""
    render(tmp_path)
    dialer = tmp_path / "hotline-eval-dialer.service"
    text = dialer.read_text(encoding="utf-8")
    dialer.write_text(text.replace("RestartSec=", "RestartSecs="), encoding="utf-8")
    assert "Unknown key 'RestartSecs'" in verify(dialer)
    dialer.write_text(text.replace(sys.prefix, "/nonexistent/venv"), encoding="utf-8")
    assert "is not executable" in verify(dialer)
    dialer.write_text(text.replace("Requires=hotline-eval-migrate.service", "Requires=hotline-eval-migrat.service"),
                      encoding="utf-8")
    assert "hotline-eval-migrat.service not found" in verify(dialer)
    # An instance's drop-ins are read too.
    instance = tmp_path / "hotline-eval-worker@callbacks.service"
    instance.symlink_to(tmp_path / "hotline-eval-worker@.service")
    conf = tmp_path / "hotline-eval-worker@callbacks.service.d" / "metrics.conf"
    conf.write_text(conf.read_text(encoding="utf-8").replace("Environment=", "Environmen="), encoding="utf-8")
    assert "Unknown key 'Environmen'" in verify(instance)


# -- what they say --------------------------------------------------------------------------------------


def test_every_service_migrates_first_and_runs_as_its_user_with_its_settings() -> None:
    for unit in SERVICES:
        assert values(unit, "User") == [USER] and values(unit, "Group") == [USER], unit.name
        assert values(unit, "EnvironmentFile") == [ENV_FILE], unit.name
        assert values(unit, "StateDirectory") == [USER], unit.name
        assert values(unit, "PartOf") == ["hotline-eval.target"], unit.name
        if unit.name == "hotline-eval-migrate.service":
            assert values(unit, "Type") == ["oneshot"] and values(unit, "RemainAfterExit") == ["yes"]
            continue
        assert "hotline-eval-migrate.service" in " ".join(values(unit, "Requires")).split(), unit.name
        assert "hotline-eval-migrate.service" in " ".join(values(unit, "After")).split(), unit.name
        assert values(unit, "WantedBy") == ["hotline-eval.target"], unit.name
        assert values(unit, "Restart") == ["always"], unit.name


def test_every_service_is_confined() -> None:
    for unit in SERVICES:
        given = dict(directives(unit))
        for key, value in {"ProtectSystem": "strict", "NoNewPrivileges": "yes", "CapabilityBoundingSet": "",
                           "ProtectHome": "yes", "PrivateTmp": "yes", "MemoryDenyWriteExecute": "yes",
                           "RestrictAddressFamilies": "AF_UNIX AF_INET AF_INET6", "LockPersonality": "yes"}.items():
            assert given.get(key) == value, f"{unit.name}: {key}={given.get(key)!r}"
        assert "@system-service" in values(unit, "SystemCallFilter"), unit.name


def test_the_fastagi_server_is_given_time_to_drain_and_signalled_alone() -> None:
    """On SIGTERM the server waits up to 30 s for its calls, then up to 30 s for its store process to take the
    journal (ivr/service.py, ivr/agi_server.py); SIGTERM to the whole group would kill that process first."""
    from ivr.agi_server import FastAgiServer
    from ivr.service import running_ivr

    agi = UNITS / "hotline-eval-agi.service"
    assert values(agi, "KillMode") == ["mixed"]
    timeout = values(agi, "TimeoutStopSec")[0]
    seconds = int(timeout.removesuffix("s"))
    calls = inspect.signature(FastAgiServer.close).parameters["grace"].default
    store = inspect.signature(running_ivr).parameters["drain_timeout"].default
    assert seconds > calls + store


# -- the commands they run ------------------------------------------------------------------------------


def parse(group: click.Group, argv: list[str], monkeypatch: pytest.MonkeyPatch) -> tuple[str, dict[str, Any]]:
    """Parse ``argv`` as click would run it, the leaf command's body replaced: its name and the values it got.

    Every level parses its options for real, so an option the command lacks, or a value its type refuses
    (a queue that is not a choice), fails here as it would in the unit.
    """
    command: click.Command = group
    context = click.Context(group)
    path = []
    for word in argv:
        if isinstance(command, click.Group) and not word.startswith("-"):
            found = command.get_command(context, word)
            assert found is not None, f"{' '.join(path) or group.name} has no command {word!r}"
            command = found
            path.append(word)
    got: dict[str, Any] = {}
    monkeypatch.setattr(command, "callback", lambda *_args, **params: got.update(params))
    group.main(argv, prog_name=group.name, standalone_mode=False)
    return " ".join(path), got


def test_every_exec_start_is_a_command_the_cli_has(monkeypatch: pytest.MonkeyPatch) -> None:
    run: dict[str, dict[str, Any]] = {}
    for unit in SERVICES:
        for argv, environment in exec_starts(unit):
            program = Path(argv[0])
            assert program.parent == Path(INSTALLED_VENV, "bin"), unit.name
            assert program.name == "hotline-eval", unit.name
            with monkeypatch.context() as instance:
                for variable, value in environment.items():
                    instance.setenv(variable, value)
                name, params = parse(hotline_eval, argv[1:], monkeypatch)
            run[name + "".join(f" {q}" for q in params.get("queues", ()))] = params
    assert set(run) == {"agi", "worker callbacks", "worker transcripts", "cron", "dialer", "web", "db upgrade"}
    assert run["agi"]["listen"] == "127.0.0.1:4573"
    assert run["web"]["listen"] == "127.0.0.1:8000"
    assert run["db upgrade"]["revision"] == "head"
    assert run["db upgrade"]["wait_seconds"] >= 300  # a PostgreSQL still starting at boot is waited for
    assert not run["worker callbacks"]["burst"]
    # Every process Prometheus scrapes (README's scrape configuration) serves its metrics on its own port.
    assert {name: params.get("metrics_at") for name, params in run.items()} == {
        "agi": "127.0.0.1:9464", "dialer": "127.0.0.1:9465", "worker callbacks": "127.0.0.1:9470",
        "worker transcripts": "127.0.0.1:9471", "cron": None, "web": None, "db upgrade": None}


def test_a_command_the_cli_lacks_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(click.NoSuchOption):
        parse(hotline_eval, ["worker", "--queues", "callbacks"], monkeypatch)
    with pytest.raises(click.BadParameter):
        parse(hotline_eval, ["worker", "--queue", "sms"], monkeypatch)
    with pytest.raises(AssertionError, match="no command 'serve'"):
        parse(hotline_eval, ["serve"], monkeypatch)


# -- the environment file --------------------------------------------------------------------------------


def template_lines() -> list[tuple[bool, str, str]]:
    """(set, not commented out; variable; value) for each variable line of the template."""
    found = []
    for line in ENV_TEMPLATE.read_text(encoding="utf-8").splitlines():
        match = re.fullmatch(r"(#?)([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            found.append((not match[1], match[2], match[3]))
    return found


def settings_variables() -> dict[str, str]:
    """Each variable Settings reads, with its field's name."""
    return {str(field.validation_alias): name for name, field in Settings.model_fields.items()}


def test_the_env_template_names_every_setting_and_nothing_else() -> None:
    named = [variable for _set, variable, _value in template_lines()]
    assert len(named) == len(set(named)), "a variable named twice"
    known = settings_variables()
    assert set(named) - set(known) == set(), "variables Settings does not read"
    assert set(known) - set(named) == set(), "settings the template does not name"
    assert REQUIRED <= {variable for is_set, variable, _value in template_lines() if is_set}


def test_the_env_template_holds_no_secret_and_its_examples_are_valid(monkeypatch: pytest.MonkeyPatch) -> None:
    """The secrets are left empty (a unit missing one stops with its name); every example value, once the
    secrets are filled in, is one Settings accepts."""
    known = settings_variables()
    hidden = {variable for variable, name in known.items() if name in SECRET_FIELDS} | {"AMI_SECRET",
                                                                                        "HOTLINE_EVAL_SMS_TOKEN"}
    for variable in known:
        monkeypatch.delenv(variable, raising=False)
    for _set, variable, value in template_lines():
        if variable in hidden:
            assert value == "", f"{variable} has a value in the template"
            value = secrets.token_urlsafe(32)
        monkeypatch.setenv(variable, value)
    given = Settings()
    assert given.database_url.startswith("postgresql+psycopg://")
    assert given.home == Path("/var/lib/hotline-eval")


def test_the_units_and_the_template_agree_on_where_things_are() -> None:
    text = ENV_TEMPLATE.read_text(encoding="utf-8")
    assert f"-g {USER} deploy/hotline-eval.env.example {ENV_FILE}" in text
    assert "-m 0640 -o root" in text
    for unit in SERVICES:
        assert values(unit, "Environment") == ["HOTLINE_EVAL_HOME=/var/lib/hotline-eval"], unit.name


def test_the_user_the_units_run_as_is_the_one_sysusers_makes(tmp_path: Path) -> None:
    entries = [line.split() for line in SYSUSERS.read_text(encoding="utf-8").splitlines()
               if line and not line.startswith("#")]
    assert [(kind, name) for kind, name, *_ in entries] == [("u", USER)]
    sysusers = shutil.which("systemd-sysusers")
    if sysusers is None:
        return
    (tmp_path / "etc").mkdir()
    done = subprocess.run([sysusers, f"--root={tmp_path}", str(SYSUSERS)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    passwd = (tmp_path / "etc" / "passwd").read_text(encoding="utf-8").splitlines()
    assert [entry.split(":")[5:] for entry in passwd if entry.startswith(f"{USER}:")] == [
        ["/var/lib/hotline-eval", "/usr/sbin/nologin"]]
