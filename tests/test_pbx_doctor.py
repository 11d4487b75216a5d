"""`hotline-eval doctor`'s ``ami`` check on a real Asterisk 22, logged in as the sample AMI user: the test PBX's
``[hotline-eval-sample]`` has exactly the read= and write= of ``ivr/asterisk/manager.conf``, so what passes here
passes for a centre that pasted the sample. ShowDialPlan is allowed to that user (``Command`` is not), finds the
dialer's contexts with their real counts and fails one the dialplan lacks or has empty; and the simulated Asterisk
the other doctor tests use answers ShowDialPlan in the same shape.
"""

from __future__ import annotations

import asyncio
import configparser
import re
from pathlib import Path

import yaml
from click.testing import CliRunner

from hotline_eval.cli import main
from hotline_eval.doctor import CHECKS, AmiSession
from protocols.ami import Message
from real_pbx import AMI_SECRET, CONFIG, ROOT, Pbx, pbx_rules
from simulators.asterisk_ami import SimulatedAsterisk

SAMPLE_USER = "hotline-eval-sample"
MISSING = "callback-agents-not-pasted"
EMPTY = "pasted-empty"  # tests/pbx/extensions.conf


def permissions(conf: Path, user: str) -> tuple[str, str]:
    """A manager.conf user's read= and write=."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";",), interpolation=None)
    parser.read(conf, encoding="utf-8")
    return parser[user]["read"], parser[user]["write"]


def test_the_doctor_checks_the_dialers_contexts_as_the_sample_user(pbx: Pbx, tmp_path: Path) -> None:
    assert permissions(CONFIG / "manager.conf", SAMPLE_USER) == permissions(
        ROOT / "ivr" / "asterisk" / "manager.conf", "hotline-eval")
    rules = pbx_rules(pbx)
    # The agent rung through a Local channel into a context this PBX's dialplan does not have.
    rules["callback"]["dialer"]["agent_dial_string"] = f"Local/{{agent}}@{MISSING}"
    # The bridge's context declared, but empty.
    rules["callback"]["dialer"]["agent_first"]["context"] = EMPTY
    rules_file = tmp_path / "rules.yaml"
    rules_file.write_text(yaml.safe_dump(rules, allow_unicode=True), encoding="utf-8")
    skipped = [option for check in CHECKS if check != "ami" for option in ("--skip", check)]
    result = CliRunner().invoke(main, ["doctor", *skipped], env={
        "HOTLINE_EVAL_HOME": str(tmp_path / "home"), "HOTLINE_EVAL_RULES": str(rules_file),
        "AMI_HOST": "127.0.0.1", "AMI_PORT": str(pbx.ami_port), "AMI_USERNAME": SAMPLE_USER,
        "AMI_SECRET": AMI_SECRET})
    assert result.exit_code == 1, result.output
    lines = [re.match(r"^(ok|warn|FAIL)\s+ami\s+(.*)$", line) for line in result.output.splitlines()]
    assert [(found[1], found[2]) for found in lines if found] == [
        ("ok", f"logged in to 127.0.0.1:{pbx.ami_port} as {SAMPLE_USER} (Asterisk Call Manager/11.0.0)"),
        ("FAIL", f"dialplan context {EMPTY} has no extension: the dialer's calls would fail "
                 f"(callback/asterisk/extensions.conf has a sample)"),
        ("ok", "dialplan context callback-verify: 1 extension, 4 priorities"),
        ("FAIL", f"dialplan context {MISSING} is not in Asterisk's dialplan: the dialer's calls would fail "
                 f"(callback/asterisk/extensions.conf has a sample; match rules.yaml's callback.dialer)"),
        ("ok", "dialplan context citizens: 5 extensions, 11 priorities"),
    ], result.output


async def _show(port: int, user: str, secret: str, context: str) -> tuple[Message, list[Message]]:
    session = await AmiSession.open("127.0.0.1", port)
    try:
        login = await session.ask("Login", {"Username": user, "Secret": secret, "Events": "off"})
        assert login.name == "Success", login
        return await session.ask_list("ShowDialPlan", {"Context": context}, "ShowDialPlanComplete")
    finally:
        session.close()


def _shape(answer: tuple[Message, list[Message]]) -> list[list[str]]:
    """Each message's keys in order, with the values that do not depend on the dialplan's contents."""
    fixed = {"response", "event", "eventlist", "message", "actionid", "registrar"}
    response, listed = answer
    return [[f"{key}: {value}" if key.lower() in fixed else key for key, value in message.fields]
            for message in (response, *listed)]


def test_the_simulator_answers_showdialplan_as_asterisk_does(pbx: Pbx) -> None:
    async def both() -> list[tuple[Message, list[Message]]]:
        simulated = SimulatedAsterisk(secret=AMI_SECRET, contexts=("callback-verify",))
        await simulated.start()
        try:
            return [await _show(port, user, AMI_SECRET, context)
                    for port, user in ((pbx.ami_port, SAMPLE_USER), (simulated.port, simulated.username))
                    for context in ("callback-verify", MISSING)]
        finally:
            await simulated.stop()

    real_found, real_missing, simulated_found, simulated_missing = asyncio.run(both())
    # The real context has four priorities, the simulated one; the first event and the last stand for the rest.
    assert _shape(simulated_found) == [*_shape(real_found)[:2], _shape(real_found)[-1]]
    assert _shape(simulated_missing) == _shape(real_missing) == [
        ["Response: Error", "ActionID: doctor-2", f"Message: Did not find context {MISSING}"]]
