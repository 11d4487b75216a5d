"""Vosk recognition in worker processes, fed while the caller speaks.

Each worker process loads every configured model once (a model is hundreds
of MB and seconds to load) and builds the rating grammars from the words its
model knows. A call's stream is pinned to one worker, because a Vosk
recogniser holds the decoding state and cannot move between processes; audio
goes over in 60 ms batches, and the worker reports the answer as soon as the
caller has stopped speaking: at Vosk's endpoint (0.5 s of silence phones in
the model's conf), or sooner, once the partial result is a whole phrase and
the audio has been quiet for the hotline's ``end_silence_seconds``. The event
loop only ever puts messages on a queue, so decoding never blocks a call.

Why not ``concurrent.futures.ProcessPoolExecutor``: it hands each task to
whichever worker is free, and a streaming recogniser needs every chunk of one
call to reach the same process.
"""

from __future__ import annotations

import array
import asyncio
import itertools
import json
import logging
import multiprocessing
import operator
import queue
import sys
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from ivr.parent_watch import exit_with_parent
from rating_core.rules.metrics import SPEECH_DECODE, SPEECH_STREAMS
from rating_core.rules.rulebook import HotlineProfile
from speech_models.grammar import RatingGrammar, build_grammar
from speech_models.recordings import SAMPLE_RATE

log = logging.getLogger(__name__)

BATCH_BYTES = 960  # 60 ms of 8 kHz 16-bit audio per message to the worker

# A grammar to build in every worker: the model it runs on and {phrase: level code}.
GrammarSpec = tuple[str, Mapping[str, str]]
ResultCallback = Callable[[dict[str, Any], bool], None]  # (Vosk result, final?)


class SpeechUnavailable(RuntimeError):
    """No worker can decode for this grammar (model missing, failed to load, or worker died)."""


# -- the worker process ------------------------------------------------------------------

# A 20 ms frame below this RMS (about -40 dBFS) counts as quiet: line hiss is well under it, speech well over.
QUIET_RMS = 330
FRAME_SAMPLES = 160


def quiet_at_the_end(pcm: bytes, quiet_before: float) -> float:
    """Seconds of quiet at the end of the audio so far, given ``quiet_before`` at the end of the last chunk."""
    samples = array.array("h")
    samples.frombytes(pcm[:len(pcm) // 2 * 2])
    if sys.byteorder == "big":
        samples.byteswap()  # AudioSocket audio is little-endian
    quiet = quiet_before
    for start in range(0, len(samples), FRAME_SAMPLES):
        frame = samples[start:start + FRAME_SAMPLES]
        loud = sum(map(operator.mul, frame, frame)) > QUIET_RMS * QUIET_RMS * len(frame)
        quiet = 0.0 if loud else quiet + len(frame) / SAMPLE_RATE
    return quiet


@dataclass
class _Decoding:
    """One stream in a worker: Vosk's recogniser, and how long the caller has been quiet."""

    recogniser: Any
    grammar: RatingGrammar | None  # None in free mode
    end_silence: float | None
    quiet: float = 0.0

    def quiet_after_a_phrase(self, pcm: bytes) -> bool:
        """A whole phrase heard and the caller quiet since: no need to wait for Vosk's 0.5 s endpoint."""
        if self.grammar is None or self.end_silence is None:
            return False  # free mode, or a whole recording: only Vosk's endpoint and the end of the audio
        self.quiet = quiet_at_the_end(pcm, self.quiet)
        if self.quiet < self.end_silence:
            return False
        return self.grammar.ends_a_rating(json.loads(self.recogniser.PartialResult()).get("partial", ""))



def _knows(model: Any, word: str) -> bool:
    """Whether ``model``'s vocabulary has ``word`` (Vosk answers -1 for a word it lacks)."""
    return bool(model.vosk_model_find_word(word) >= 0)

def _worker_main(number: int, inbox: Any, outbox: Any, models: dict[str, str],
                 grammars: dict[str, GrammarSpec]) -> None:
    # From the start: a server killed with SIGKILL never sends "stop", and loading the models takes seconds.
    exit_with_parent()
    import vosk  # only the workers load the engine

    vosk.SetLogLevel(-1)
    loaded = {}
    for name, path in models.items():
        try:
            loaded[name] = vosk.Model(path)
        except Exception as exc:  # Vosk raises a bare Exception for a corrupt model
            outbox.put(("load_failed", number, name, f"{type(exc).__name__}: {exc}"))
    built: dict[str, RatingGrammar] = {}
    for key, (model_name, phrases) in grammars.items():
        model = loaded.get(model_name)
        if model is not None:
            built[key] = build_grammar(phrases, partial(_knows, model))
    outbox.put(("ready", number, built))
    streams: dict[int, _Decoding] = {}
    while True:
        message = inbox.get()
        op, stream = message[0], message[1]
        if op == "stop":
            break
        try:
            if op == "open":
                grammar = built.get(message[2])
                model = loaded[grammars[message[2]][0]] if grammar is not None else loaded.get(message[2])
                if model is None:
                    outbox.put(("error", stream, f"no model for {message[2]!r}"))
                    continue
                recogniser = (vosk.KaldiRecognizer(model, SAMPLE_RATE,
                                                   json.dumps(list(grammar.alternatives), ensure_ascii=False))
                              if grammar is not None else vosk.KaldiRecognizer(model, SAMPLE_RATE))
                recogniser.SetWords(True)
                streams[stream] = _Decoding(recogniser, grammar, message[3])
            elif op == "audio":
                decoding = streams.get(stream)
                if decoding is None:
                    continue
                if decoding.recogniser.AcceptWaveform(message[2]):
                    outbox.put(("result", stream, json.loads(decoding.recogniser.Result())))
                elif decoding.quiet_after_a_phrase(message[2]):
                    outbox.put(("result", stream, json.loads(decoding.recogniser.FinalResult())))
            elif op == "finish":
                decoding = streams.pop(stream, None)
                outbox.put(("final", stream, json.loads(decoding.recogniser.FinalResult()) if decoding else {}))
            elif op == "drop":
                streams.pop(stream, None)
        except Exception as exc:
            streams.pop(stream, None)
            outbox.put(("error", stream, f"{type(exc).__name__}: {exc}"))


# -- the event loop's side ---------------------------------------------------------------


@dataclass
class _Worker:
    number: int
    process: Any
    inbox: Any
    streams: set[int] = field(default_factory=set)

    @property
    def alive(self) -> bool:
        return self.process.is_alive()


class RecognitionStream:
    """One caller's audio on its way to a worker. ``on_result`` is called on the event loop."""

    def __init__(self, pool: RecognizerPool, worker: _Worker, number: int, on_result: ResultCallback) -> None:
        self.pool = pool
        self.worker = worker
        self.number = number
        self.on_result = on_result
        self.loop = asyncio.get_running_loop()  # results are delivered on the loop that opened the stream
        self._pending = bytearray()
        self.closed = False
        self.finished_at: float | None = None  # when the audio ended: the final result's wait is timed from it

    def feed(self, pcm: bytes) -> None:
        if self.closed:
            return
        self._pending += pcm
        if len(self._pending) >= BATCH_BYTES:
            self.worker.inbox.put(("audio", self.number, bytes(self._pending)))
            self._pending.clear()

    def finish(self) -> None:
        """Decode what is left; the final result comes through ``on_result(result, True)``."""
        if self.closed:
            return
        if self._pending:
            self.worker.inbox.put(("audio", self.number, bytes(self._pending)))
            self._pending.clear()
        self.worker.inbox.put(("finish", self.number))
        if self.finished_at is None:
            self.finished_at = time.perf_counter()

    def close(self) -> None:
        """No more results wanted (the caller pressed a key, hung up, or the answer is in)."""
        if not self.closed:
            self.closed = True
            self.worker.inbox.put(("drop", self.number))
            self.pool._forget(self)


class RecognizerPool:
    """Worker processes for ``models`` ({name: folder}) with the given grammars built in each."""

    def __init__(self, models: Mapping[str, str], grammars: Mapping[str, GrammarSpec], *, workers: int = 2,
                 start_timeout: float = 120.0) -> None:
        self.models = dict(models)
        self.grammar_specs = dict(grammars)
        self.size = max(1, workers)
        self.start_timeout = start_timeout
        self.grammars: dict[str, RatingGrammar] = {}  # as the workers built them
        self.failed_models: dict[str, str] = {}
        self._workers: list[_Worker] = []
        self._streams: dict[int, RecognitionStream] = {}
        self._numbers = itertools.count(1)
        self._outbox: Any = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        """Start the workers and wait until each has loaded its models (blocking: run it in a thread)."""
        context = multiprocessing.get_context("spawn")  # no forked copies of the server's threads and sockets
        self._outbox = context.Queue()
        for number in range(self.size):
            inbox = context.Queue()
            process = context.Process(target=_worker_main, name=f"speech-worker-{number}", daemon=True,
                                      args=(number, inbox, self._outbox, self.models, self.grammar_specs))
            process.start()
            self._workers.append(_Worker(number, process, inbox))
        ready = 0
        while ready < self.size:
            try:
                message = self._outbox.get(True, self.start_timeout)
            except queue.Empty:
                log.error("speech workers: %d of %d ready after %g s; going on with those", ready, self.size,
                          self.start_timeout)
                break
            if message[0] == "load_failed":
                self.failed_models[message[2]] = message[3]
            elif message[0] == "ready":
                ready += 1
                self.grammars = message[2]
        for name, why in self.failed_models.items():
            log.error("speech model %s failed to load from %s: %s", name, self.models[name], why)
        self._reader = threading.Thread(target=self._read_results, name="speech-results", daemon=True)
        self._reader.start()

    def can_decode(self, grammar: str) -> bool:
        return grammar in self.grammars and any(w.alive for w in self._workers)

    def hears(self, hotline: HotlineProfile) -> bool:
        """Whether the hotline takes spoken ratings and this pool can decode them."""
        return hotline.speech.language is not None and self.can_decode(hotline.code)

    def open(self, grammar: str, on_result: ResultCallback, *, end_silence: float | None = None) -> RecognitionStream:
        """A stream on the least busy live worker; ``end_silence``: quiet after a whole phrase that answers at once."""
        if grammar not in self.grammars:
            raise SpeechUnavailable(f"no grammar {grammar!r} (its model is missing or failed to load)")
        alive = [w for w in self._workers if w.alive]
        if not alive:
            raise SpeechUnavailable("every speech worker has died")
        worker = min(alive, key=lambda w: len(w.streams))
        stream = RecognitionStream(self, worker, next(self._numbers), on_result)
        worker.streams.add(stream.number)
        self._streams[stream.number] = stream
        worker.inbox.put(("open", stream.number, grammar, end_silence))
        SPEECH_STREAMS.inc()
        return stream

    async def decode(self, name: str, pcm: bytes, *, timeout: float) -> list[dict[str, Any]]:
        """Every utterance Vosk finds in a whole recording, in order, the final one last.

        ``name`` is a grammar (the rating) or a model (free mode). Raises SpeechUnavailable when
        no worker can take it, it fails there, or it takes longer than ``timeout``.
        """
        results: list[dict[str, Any]] = []
        done = asyncio.get_running_loop().create_future()

        def on_result(result: dict[str, Any], final: bool) -> None:
            results.append(result)
            if final and not done.done():
                done.set_result(None)

        stream = self.open(name, on_result)  # no early end: the recording is already whole
        try:
            stream.feed(pcm)
            stream.finish()
            try:
                await asyncio.wait_for(done, timeout)
            except TimeoutError:
                raise SpeechUnavailable(f"no result within {timeout:g} s") from None
        finally:
            stream.close()
        errors = [str(r["error"]) for r in results if "error" in r]
        if errors:
            raise SpeechUnavailable(errors[0])
        return results

    def _forget(self, stream: RecognitionStream) -> None:
        if self._streams.pop(stream.number, None) is not None:
            SPEECH_STREAMS.dec()
        stream.worker.streams.discard(stream.number)

    def _read_results(self) -> None:
        while True:
            try:
                message = self._outbox.get()
            except (EOFError, OSError):
                return
            if message[0] == "stop":
                return
            stream = self._streams.get(message[1])
            if stream is not None:
                try:
                    stream.loop.call_soon_threadsafe(self._deliver, stream, message)
                except RuntimeError:  # that loop has closed: nobody is waiting any more
                    pass

    @staticmethod
    def _deliver(stream: RecognitionStream, message: tuple[Any, ...]) -> None:
        kind, number = message[0], message[1]
        if stream.closed:
            return
        if kind == "error":
            log.error("speech stream %d: %s", number, message[2])
            stream.on_result({"error": message[2]}, True)
        else:
            if kind == "final" and stream.finished_at is not None:
                SPEECH_DECODE.observe(time.perf_counter() - stream.finished_at)
            stream.on_result(message[2], kind == "final")

    def close(self) -> None:
        """Stop the workers (blocking: run it in a thread)."""
        for worker in self._workers:
            worker.inbox.put(("stop", 0))
        for worker in self._workers:
            worker.process.join(10)
            if worker.alive:
                worker.process.kill()
        if self._outbox is not None:
            self._outbox.put(("stop", 0))
            if self._reader is not None:
                self._reader.join(5)
        self._workers.clear()
