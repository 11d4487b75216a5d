"""A realistic mix of callers, played concurrently against a FastAGI server, with what each should yield.

Every simulated caller knows the rating it gave (or that it gave none), so
after a run the simulator can check the store call by call: exactly the
rating, tags and voice message the caller gave, with the agent, queue and
case from the channel variables.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload

from rating_core.rules.rulebook import HotlineProfile, Rules
from rating_core.store.models import Call
from simulators.asterisk_agi import Caller, CallResult, HangUp, Press, Silence, Speak, run_call

# (kind, weight): roughly what a hotline sees after the agent hangs up.
CALLER_MIX = (
    ("satisfied", 52),
    ("dissatisfied_with_message", 10),
    ("dissatisfied_no_message", 6),
    ("hangup_after_rating", 5),
    ("silent", 9),
    ("early_hangup", 6),
    ("invalid_then_valid", 5),
    ("repeat_then_valid", 3),
    ("invalid_only", 2),
    ("missing_variables", 2),
)


@dataclass
class Expectation:
    hotline: str
    level: str | None
    tags: tuple[str, ...] = ()
    voice_message: bool = False
    end_reason: str = "completed"


@dataclass
class SimulatedCall:
    uniqueid: str
    caller: Caller
    expected: Expectation
    result: CallResult | None = None


@dataclass
class Summary:
    calls: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    expected_levels: Counter[str] = field(default_factory=Counter)
    unrated: int = 0
    errors: list[str] = field(default_factory=list)
    mismatches: list[str] = field(default_factory=list)
    seconds: float = 0.0
    checked: bool = False

    def lines(self, rules: Rules) -> list[str]:
        names = {level.code: level.name for level in rules.levels}
        out = [f"calls: {self.calls} in {self.seconds:.2f} s"]
        out += [f"  {names[code]}: {self.expected_levels[code]}" for code in names if self.expected_levels[code]]
        out.append(f"  未评价: {self.unrated}")
        out.append("caller kinds: " + ", ".join(f"{k} {n}" for k, n in sorted(self.by_kind.items())))
        out.append(f"errors: {len(self.errors)}")
        out += [f"  {e}" for e in self.errors[:10]]
        if self.checked:
            out.append(f"store check: {len(self.mismatches)} mismatch(es)")
            out += [f"  {m}" for m in self.mismatches[:10]]
        return out


def _invalid_key(profile: HotlineProfile, rng: random.Random) -> str:
    choices = [k for k in "0123456789#" if k not in profile.keys and k != profile.repeat_key and k != "#"]
    return rng.choice(choices)


def make_caller(kind: str, profile: HotlineProfile, rules: Rules, rng: random.Random,
                n: int) -> tuple[Caller, Expectation]:
    """One caller of ``kind`` and what the store should hold after its call."""
    positive = [k for k, code in profile.keys.items() if not rules.level(code).negative]
    negative = [k for k, code in profile.keys.items() if rules.level(code).negative]
    variables = {
        "EVAL_AGENT": f"{1000 + rng.randrange(40)}",
        "EVAL_QUEUE": rng.choice(["社保咨询", "医保", "户籍", "住房公积金", "投诉建议"]),
        "EVAL_CASE": f"GD{20261122}{n:06d}",
        "EVAL_UNIT": rng.choice(["市人社局", "市医保局", "市公安局", "市住建局", ""]),
        "EVAL_LINKEDID": f"1795316{n:03d}.{n * 2}",
    }
    callerid = f"13{rng.randrange(10**9):09d}"
    expect = Expectation(hotline=profile.code, level=None)
    reactions: list = []
    if kind == "satisfied":
        key = rng.choice(positive)
        reactions = [Press(key)]
        expect.level = profile.keys[key]
    elif kind in ("dissatisfied_with_message", "dissatisfied_no_message", "hangup_after_rating"):
        key = rng.choice(negative)
        tag = rng.choice(profile.tags)
        expect.level = profile.keys[key]
        if kind == "hangup_after_rating":
            reactions = [Press(key), HangUp()]
            expect.end_reason = "caller_hangup"
        elif kind == "dissatisfied_with_message":
            end = rng.choice(["#", "silence"])
            reactions = [Press(key), Press(tag.key), Silence(), Speak(rng.uniform(3, 12), end)]
            expect.tags, expect.voice_message = (tag.code,), True
        else:
            reactions = [Press(key), Press(tag.key), Silence(), Silence()]
            expect.tags = (tag.code,)
    elif kind == "silent":
        expect.end_reason = "no_input"
    elif kind == "early_hangup":
        reactions = [HangUp()]
        expect.end_reason = "caller_hangup"
    elif kind == "invalid_then_valid":
        key = rng.choice(positive)
        # Either wait for "输入有误" to finish, or cut it short with the right key.
        reactions = [Press(_invalid_key(profile, rng)), rng.choice([Silence(), Press(key)])]
        if isinstance(reactions[-1], Silence):
            reactions.append(Press(key))
        expect.level = profile.keys[key]
    elif kind == "repeat_then_valid":
        key = rng.choice(positive)
        reactions = [Press(profile.repeat_key), Press(key)]
        expect.level = profile.keys[key]
    elif kind == "invalid_only":
        reactions = [Press(_invalid_key(profile, rng)), Silence()] * (profile.menu.invalid_replays + 1)
        expect.end_reason = "invalid_input"
    elif kind == "missing_variables":
        variables = {}
        key = rng.choice(positive)
        reactions = [Press(key)]
        expect.level = profile.keys[key]
    else:
        raise ValueError(f"unknown caller kind {kind!r}")
    return Caller(reactions, callerid=callerid, variables=variables, kind=kind), expect


def plan_calls(rules: Rules, count: int, seed: int, hotlines: list[str] | None = None) -> list[SimulatedCall]:
    rng = random.Random(seed)
    codes = hotlines or list(rules.hotlines)
    kinds, weights = zip(*CALLER_MIX)
    calls = []
    base = int(time.time())
    for n in range(count):
        profile = rules.hotline(rng.choice(codes))
        kind = rng.choices(kinds, weights)[0]
        caller, expected = make_caller(kind, profile, rules, rng, n)
        calls.append(SimulatedCall(f"{base}.{seed % 1000}{n:06d}", caller, expected))
    return calls


async def simulate(
    host: str, port: int, calls: list[SimulatedCall], *, concurrency: int, time_scale: float = 0.0
) -> Summary:
    """Play ``calls`` with at most ``concurrency`` at once; return the summary (not yet checked)."""
    gate = asyncio.Semaphore(concurrency)

    async def one(call: SimulatedCall) -> None:
        async with gate:
            call.result = await run_call(
                host, port, call.caller, uniqueid=call.uniqueid,
                script=f"postcall?hotline={call.expected.hotline}", time_scale=time_scale,
            )

    started = time.perf_counter()
    await asyncio.gather(*(one(call) for call in calls))
    summary = Summary(calls=len(calls), seconds=time.perf_counter() - started)
    for call in calls:
        summary.by_kind[call.caller.kind] += 1
        if call.expected.level:
            summary.expected_levels[call.expected.level] += 1
        else:
            summary.unrated += 1
        result = call.result
        assert result is not None
        if result.error:
            summary.errors.append(f"{call.uniqueid}: {result.error}")
        if result.channel.violations:
            summary.errors.append(f"{call.uniqueid}: protocol: {'; '.join(result.channel.violations)}")
        if not result.closed_by_server and not result.error:
            summary.errors.append(f"{call.uniqueid}: the server did not close the connection")
    return summary


def check_store(session: Session, calls: list[SimulatedCall], summary: Summary) -> None:
    """Compare what each caller gave with what the store holds; add mismatches to ``summary``."""
    summary.checked = True
    stored = {
        call.uniqueid: call
        for call in session.scalars(
            select(Call).where(Call.uniqueid.in_([c.uniqueid for c in calls])).options(selectinload(Call.rating))
        )
    }
    for call in calls:
        row = stored.get(call.uniqueid)
        want = call.expected
        if row is None:
            summary.mismatches.append(f"{call.uniqueid} ({call.caller.kind}): no call in the store")
            continue
        problems = []
        got_level = row.rating.level if row.rating else None
        if got_level != want.level:
            problems.append(f"level {got_level} != {want.level}")
        if row.rating and tuple(row.rating.reason_tags) != want.tags:
            problems.append(f"tags {row.rating.reason_tags} != {list(want.tags)}")
        if row.rating and bool(row.rating.voice_message_file) != want.voice_message:
            problems.append(f"voice message {row.rating.voice_message_file!r}, expected {want.voice_message}")
        if row.end_reason != want.end_reason:
            problems.append(f"end {row.end_reason} != {want.end_reason}")
        if row.hotline != want.hotline:
            problems.append(f"hotline {row.hotline} != {want.hotline}")
        for column, variable in (("agent_id", "EVAL_AGENT"), ("queue", "EVAL_QUEUE"), ("case_number", "EVAL_CASE")):
            if getattr(row, column) != (call.caller.variables.get(variable) or None):
                problems.append(f"{column} {getattr(row, column)!r} != {call.caller.variables.get(variable)!r}")
        if problems:
            summary.mismatches.append(f"{call.uniqueid} ({call.caller.kind}): {'; '.join(problems)}")
