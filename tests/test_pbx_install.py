"""The README's install, followed on a fresh Debian 12 under a real systemd, to the first rated call on a real Asterisk.

What a centre's operations team does (README, "Running it in production"): on a Debian host beside its Asterisk,
the commands of "Install, to the first rated call", in order, as written; the units started; a test call dialled
on the sample's ``eval-test`` line; then "Upgrade". This tier does the same on a Debian 12 that
``tests/debian_root.sh`` debootstraps once under /opt, booted with ``systemd-nspawn`` (its own systemd as PID 1,
the overlay on a tmpfs, so every run starts from the fresh host), with the suite's Asterisk build running inside it
as a system service. The README's shell blocks are read from README.md and run as they are; the few lines a
person answers at a keyboard (passwords, the editor) or that reach the internet (the model download; the
release is installed as the built wheel the README names instead) are replaced, each by name, so a change to
the README that this tier does not follow fails here rather than passing unseen.

The container has no network but a link to this host, for the robot that plays the caller over the AMI
(tests/real_pbx.py): everything the install needs from apt is in the root already, and pip installs from a
folder of wheels built here from this checkout.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import unavailable
from debian_machine import NSPAWN, Machine, RootUnavailable, one_at_a_time
from real_pbx import CONFIG, PbxCall, Robot, rendered
from real_pbx import PREFIX as ASTERISK
from release import copy_release
from simulators.asterisk_agi import Caller, Press
from waiting import HANG

ROOT = Path(__file__).resolve().parent.parent

# What the operator types or chooses (the README leaves them to the reader).
DATABASE_PASSWORD = "install-test-db-password"
ADMIN_PASSWORD = "install-test-admin-Pa55"
AMI_SECRET = "install-test-ami-secret-0123456789"
ROBOT_SECRET = "install-test-robot-secret"
WHEELS = "/srv/wheels"  # the wheels built from this checkout, inside the machine

# The README's lines that wait for a person or the internet, and what this tier runs instead.
AT_THE_KEYBOARD = {
    "/opt/hotline-eval/venv/bin/pip install ./hotline-eval":
        f"/opt/hotline-eval/venv/bin/pip install -q --no-index --find-links {WHEELS} hotline-eval",
    "runuser -u postgres -- createuser --pwprompt hotline_eval":
        f"printf '%s\\n%s\\n' {DATABASE_PASSWORD} {DATABASE_PASSWORD} | "
        "runuser -u postgres -- createuser --pwprompt hotline_eval",
    "editor /etc/hotline-eval/hotline-eval.env":
        "sed -i -e 's/CHANGE-ME/" + DATABASE_PASSWORD + "/'"
        " -e \"s/^HOTLINE_EVAL_SECRET_KEY=.*/HOTLINE_EVAL_SECRET_KEY=$(python3 -c 'import secrets; "
        "print(secrets.token_hex(32))')/\""
        " -e \"s/^HOTLINE_EVAL_NUMBER_KEY=.*/HOTLINE_EVAL_NUMBER_KEY=$(python3 -c 'import secrets; "
        "print(secrets.token_hex(32))')/\""
        f" -e 's/^AMI_SECRET=.*/AMI_SECRET={AMI_SECRET}/' /etc/hotline-eval/hotline-eval.env",
    "he users create admin --role admin --name 管理员":
        f"printf '%s\\n%s\\n' {ADMIN_PASSWORD} {ADMIN_PASSWORD} | he users create admin --role admin --name 管理员",
    "he users create zhang --role agent --agent-id 2001 --name 张三":
        f"printf '%s\\n%s\\n' {ADMIN_PASSWORD} {ADMIN_PASSWORD} | "
        "he users create zhang --role agent --agent-id 2001 --name 张三",
    # No internet here, and the Mandarin model is not to be had: the shipped rules' speech lines take keys
    # (the FastAGI server says the model is missing and goes on), and the doctor FAILs the speech check.
    "he models fetch vosk-model-small-cn-0.22": ":",
    "/opt/hotline-eval/venv/bin/pip install --upgrade ./hotline-eval":
        f"/opt/hotline-eval/venv/bin/pip install -q --no-index --find-links {WHEELS} --force-reinstall --no-deps "
        "hotline-eval",
}
SERVICES = ("hotline-eval-agi", "hotline-eval-worker@callbacks", "hotline-eval-worker@transcripts",
            "hotline-eval-cron", "hotline-eval-dialer", "hotline-eval-web")


def readme_section(heading: str) -> list[str]:
    """The ``sh`` blocks of the README section ``### heading``, as written."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split(f"\n### {heading}\n", 1)[1].split("\n### ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, flags=re.S)
    assert blocks, f"README: no sh block under ### {heading}"
    return blocks


def readme_blocks(heading: str) -> list[str]:
    """:func:`readme_section`, each line a person would type replaced as :data:`AT_THE_KEYBOARD` says (a line is
    replaced when it starts with a key; its trailing comment goes with it)."""
    return ["\n".join(_typed(line) for line in block.splitlines()) for block in readme_section(heading)]


def _typed(line: str) -> str:
    for said, typed in AT_THE_KEYBOARD.items():
        if line.startswith(said):
            return typed
    return line


def test_every_replaced_line_is_still_in_the_readme() -> None:
    """A line of :data:`AT_THE_KEYBOARD` the README no longer has would leave the README's new line untried."""
    lines = [line for heading in ("Install, to the first rated call", "Upgrade")
             for block in readme_section(heading) for line in block.splitlines()]
    assert [said for said in AT_THE_KEYBOARD if not any(line.startswith(said) for line in lines)] == []


# -- the machine and what it installs from -------------------------------------------------------------------


# This host's pip settings (a mirror, a CA bundle, a cache), lent to the machine's pip for the one download.
PIP_SETTINGS = ("/etc/pip.conf", "/etc/xdg/pip", "/etc/ssl/certs/ca-certificates.crt", "/opt/wheels", "/opt/pypi",
                "/opt/pypi-more")
PIP_CACHE = Path("/root/.cache/pip")


def _wheels(into: Path) -> Path:
    """This checkout as a release (returned), its wheel, and every wheel that wheel needs on the machine's Python.

    The dependencies are resolved by the machine's own Python (Debian's 3.11.2: redis wants async-timeout below
    3.11.3, which this host's Python does not), at the versions this suite's environment has (a constraint file
    from its ``pip freeze``), in a boot-less run of the root that shares this host's network for the index; the
    install itself then runs offline from the folder, as `pip install` of the built wheel."""
    tree = copy_release(into / "release" / "hotline-eval")
    wheels = into / "wheels"
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w",
                            str(wheels), str(tree)], capture_output=True, text=True, timeout=HANG)
    assert built.returncode == 0, built.stderr[-3000:]
    [wheel] = wheels.glob("hotline_eval-*.whl")
    frozen = subprocess.run([sys.executable, "-m", "pip", "freeze", "--exclude-editable"], capture_output=True,
                            text=True, check=True, timeout=HANG)
    (wheels / "constraints.txt").write_text(frozen.stdout, encoding="utf-8")
    lent = [f"--bind-ro={path}" for path in PIP_SETTINGS if Path(path).exists()]
    PIP_CACHE.mkdir(parents=True, exist_ok=True)
    fetched = subprocess.run(
        [*NSPAWN, "--resolv-conf=bind-host", "--pipe", *lent, f"--bind={PIP_CACHE}", f"--bind={wheels}:{WHEELS}",
         "/bin/sh", "-c", f"python3 -m venv /tmp/pip && /tmp/pip/bin/pip download -q -d {WHEELS} "
                          f"-c {WHEELS}/constraints.txt {WHEELS}/{wheel.name}"],
        capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=HANG)
    assert fetched.returncode == 0, fetched.stdout[-2000:] + fetched.stderr[-3000:]
    return tree


@pytest.fixture(scope="module")
def machine(asterisk_build: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Machine]:
    """The fresh host, booted, with Asterisk running on it: what the README's install starts from."""
    home = tmp_path_factory.mktemp("install")
    try:
        with one_at_a_time(ASTERISK):
            release = _wheels(home)
            box = Machine(home, {release: "/root/hotline-eval", home / "wheels": WHEELS, ASTERISK: str(ASTERISK)})
            try:
                box.boot()
                _asterisk_beside_it(box)
                yield box
            finally:
                box.shut_down()
    except RootUnavailable as exc:
        unavailable(str(exc))


@pytest.fixture(scope="module")
def installed(machine: Machine) -> Machine:
    """The README's "Install, to the first rated call", followed: its three blocks, the Asterisk paragraph
    between the second and the third."""
    first, second, start = readme_blocks("Install, to the first rated call")
    machine.run(first)
    machine.run(second)
    _paste_the_sample_dialplan(machine)
    machine.run(start)
    return machine


# -- the Asterisk beside it ------------------------------------------------------------------------------------


ASTERISK_CONF = f"""; The centre's Asterisk: the suite's build, laid out as a packaged Asterisk would be.
[directories]
astetcdir => /etc/asterisk
astmoddir => {ASTERISK}/lib/asterisk/modules
astvarlibdir => /var/lib/asterisk
astdbdir => /var/lib/asterisk
astkeydir => /var/lib/asterisk
astdatadir => /var/lib/asterisk
astagidir => /var/lib/asterisk/agi-bin
astspooldir => /var/spool/asterisk
astrundir => /run/asterisk
astlogdir => /var/log/asterisk
astsbindir => {ASTERISK}/sbin

[options]
transmit_silence = no
verbose = 3
"""

ASTERISK_UNIT = f"""[Unit]
Description=Asterisk PBX
After=network.target

[Service]
User=asterisk
Group=asterisk
RuntimeDirectory=asterisk
ExecStart={ASTERISK}/sbin/asterisk -f -C /etc/asterisk/asterisk.conf
Restart=on-failure

[Install]
WantedBy=multi-user.target
"""

# The control socket appears a moment after the service starts.
WAIT_FOR_ASTERISK = """
    until asterisk -rx 'core waitfullybooted' 2>/dev/null | grep -q 'fully booted'; do
        systemctl is-active --quiet asterisk || { journalctl -u asterisk --no-pager -n 30; exit 1; }
        sleep 0.2
    done
"""


def _asterisk_beside_it(box: Machine) -> None:
    """What "Asterisk itself set up" means before the README starts: a user and group asterisk, Asterisk running
    as a service with its configuration in /etc/asterisk, its sounds in /var/lib/asterisk/sounds, and an AMI the
    centre already uses (here: the robot's user, from this host's side of the link)."""
    box.run(f"""
        useradd --system --user-group --home-dir /var/lib/asterisk --no-create-home asterisk
        install -d -o asterisk -g asterisk /etc/asterisk /var/lib/asterisk /var/lib/asterisk/sounds \\
            /var/spool/asterisk /var/log/asterisk
        ln -s {ASTERISK}/var/lib/asterisk/documentation /var/lib/asterisk/documentation
        sox -n -r 8000 -c 1 -b 16 /var/lib/asterisk/sounds/beep.wav synth 0.25 sine 1000
    """)
    # `asterisk -rx …` as on a packaged install (the build's own default configuration folder is under /opt).
    wrapper = f'#!/bin/sh\nexec {ASTERISK}/sbin/asterisk -C /etc/asterisk/asterisk.conf "$@"\n'
    box.write("/usr/local/sbin/asterisk", wrapper, mode="0755")
    box.write("/etc/asterisk/asterisk.conf", ASTERISK_CONF)
    for name in ("modules", "logger", "cdr", "cel", "ccss", "udptl", "indications", "musiconhold", "acl", "features"):
        box.write(f"/etc/asterisk/{name}.conf", (CONFIG / f"{name}.conf").read_text(encoding="utf-8"))
    box.write("/etc/asterisk/manager.conf", f"""[general]
enabled = yes
bindaddr = 0.0.0.0
port = 5038
timestampevents = yes

[robot]
secret = {ROBOT_SECRET}
deny = 0.0.0.0/0.0.0.0
permit = {box.host_address}/255.255.255.255
read = all
write = all
""")
    box.write("/etc/asterisk/extensions.conf", "")
    box.write("/etc/systemd/system/asterisk.service", ASTERISK_UNIT)
    box.run("systemctl daemon-reload && systemctl enable --now asterisk")
    box.run(WAIT_FOR_ASTERISK)


def _paste_the_sample_dialplan(box: Machine) -> None:
    """The README's Asterisk paragraph: the sample dialplans (and this tier's caller and citizens, as in the
    suite's test PBX), the sample AMI user with the secret of AMI_SECRET, the voice-message folder, a reload."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    folder = "install -d -o asterisk -g asterisk -m 2775 /var/spool/asterisk/hotline-eval"
    assert folder in readme and "asterisk -rx 'core reload'" in readme
    box.write("/etc/asterisk/extensions.conf", rendered(CONFIG / "extensions.conf", {
        "repo": "/etc/asterisk/hotline-eval", "fastagi_port": "4573"}))
    sample_user = (ROOT / "ivr" / "asterisk" / "manager.conf").read_text(encoding="utf-8").split("[hotline-eval]")[1]
    sample_user = sample_user.replace("change-me-to-a-long-random-secret", AMI_SECRET)
    box.run("cat >> /etc/asterisk/manager.conf", input=f"\n[hotline-eval]{sample_user}")
    box.run(f"""
        for part in ivr callback; do
            install -D -m 0644 hotline-eval/$part/asterisk/extensions.conf \\
                /etc/asterisk/hotline-eval/$part/asterisk/extensions.conf
        done
        {folder}
        asterisk -rx 'core reload'
    """)


# -- the call --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AsteriskInside:
    """The machine's Asterisk as the robot reaches it: its AMI across the link (the robot plays keys only, so the
    sounds folder for its clips is never written)."""

    ami_host: str
    ami_port: int = 5038
    ami_username: str = "robot"
    ami_secret: str = ROBOT_SECRET
    sounds: Path = Path("/nonexistent")


def dial_the_test_line(box: Machine, *keys: str) -> PbxCall:
    """The README's test call: 8000 on the sample's ``eval-test`` line, the keys pressed as the prompts ask."""
    async def run() -> PbxCall:
        async with Robot(AsteriskInside(box.address)) as robot:
            call = await robot.call(Caller([Press(key) for key in keys], callerid="13800138000"), "12345",
                                    dialled=("eval-test", "8000"))
            return await robot.finished(call, timeout=HANG)
    return asyncio.run(run())


def he_function() -> str:
    """The README's ``he``: a command as the services run it (their user, settings and home)."""
    block = readme_section("Install, to the first rated call")[1]
    definition = re.search(r"^he\(\) \{.*?; \}$", block, flags=re.S | re.M)
    assert definition, "README: no he() { …; } in the install section"
    return definition.group(0)


def he(box: Machine, command: str) -> str:
    return box.run(f"{he_function()}\nhe {command}").stdout


def rows_once_stored(box: Machine, command: str, uniqueid: str) -> list[dict[str, object]]:
    """``he COMMAND``'s JSON lines, once one is about the call ``uniqueid``: the FastAGI server writes the rating
    to its journal before the caller hears the next prompt, and its store process puts it in the database (and
    opens the task) a moment later."""
    box.run(f"{he_function()}\nuntil he {command} | grep -q '\"uniqueid\": \"{uniqueid}\"'; do sleep 0.5; done")
    return [json.loads(line) for line in he(box, command).strip().splitlines()]


def about(rows: list[dict[str, object]], uniqueid: str) -> dict[str, object]:
    [row] = [row for row in rows if row["uniqueid"] == uniqueid]
    return row


def services_state(box: Machine) -> dict[str, tuple[str, str]]:
    """Each unit's ActiveState and NRestarts."""
    shown = box.run("systemctl show --property=Id,ActiveState,NRestarts hotline-eval-migrate " + " ".join(SERVICES))
    states = {}
    for block in shown.stdout.strip().split("\n\n"):
        fields = dict(line.split("=", 1) for line in block.splitlines())
        states[fields["Id"].removesuffix(".service")] = (fields["ActiveState"], fields["NRestarts"])
    return states


# -- the tests -------------------------------------------------------------------------------------------------


def test_the_install_section_brings_every_service_up(installed: Machine) -> None:
    states = services_state(installed)
    assert states == {"hotline-eval-migrate": ("active", "0"), **{name: ("active", "0") for name in SERVICES}}
    # The README's `journalctl -u hotline-eval-agi -n 5` line (the unit is started once the server listens).
    journal = installed.run("journalctl -u hotline-eval-agi --no-pager").stdout
    assert "FastAGI server listening on 127.0.0.1:4573" in journal
    # Every process the README's scrape configuration names answers on its port (the workers' ports from their
    # instances' drop-ins, copied with the units). The workers open theirs a moment after they start.
    for port in (9464, 9465, 9470, 9471):
        installed.run(f"until python3 -c \"import urllib.request; urllib.request.urlopen("
                      f"'http://127.0.0.1:{port}/metrics', timeout=5)\" 2>/dev/null; do sleep 0.5; done")


def test_the_first_call_is_rated_and_its_callback_task_made(installed: Machine) -> None:
    call = dial_the_test_line(installed, "4", "1", "#")  # 不满意, the first reason, no message
    assert call.commands[-1] == "HANGUP" and call.agistatus == "HANGUP", call  # thanked, and hung up by the flow
    rating = about(rows_once_stored(installed, "ratings export --format jsonl", call.uniqueid), call.uniqueid)
    assert (rating["level_name"], rating["channel"], rating["agent_id"], rating["end_reason"]) == \
        ("不满意", "dtmf", "9999", "completed")
    task = about(rows_once_stored(installed, "callbacks list", call.uniqueid), call.uniqueid)
    assert task["level"] == "dissatisfied"


def test_the_doctor_finds_nothing_wrong_but_the_missing_speech_models(installed: Machine) -> None:
    done = installed.run(f"{he_function()}\nhe doctor --running", check=False)
    failed = [line for line in done.stdout.splitlines() if line.startswith("FAIL")]
    assert {line.split()[1] for line in failed} == {"speech"}, done.stdout  # the models are not fetched here
    assert re.search(r"^ok +ami +dialplan context callback-verify", done.stdout, flags=re.M), done.stdout
    assert done.returncode == 1


def test_an_upgrade_as_the_readme_says_keeps_the_ratings_and_takes_the_next_call(installed: Machine) -> None:
    before = [json.loads(line) for line in he(installed, "ratings export --format jsonl").strip().splitlines()]
    [upgrade] = readme_blocks("Upgrade")
    installed.run(upgrade)
    states = services_state(installed)
    assert {name: state for name, (state, _) in states.items()} == \
        {"hotline-eval-migrate": "active", **{name: "active" for name in SERVICES}}
    # No wait for the server here: `systemctl start hotline-eval.target` returned once it listens (Type=notify).
    call = dial_the_test_line(installed, "1")  # 非常满意
    after = rows_once_stored(installed, "ratings export --format jsonl", call.uniqueid)
    assert [row for row in after if row["uniqueid"] != call.uniqueid] == before
    assert about(after, call.uniqueid)["level_name"] == "非常满意"
