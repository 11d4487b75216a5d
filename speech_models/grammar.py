"""The rating grammar: the phrases a caller may say, as Vosk can hear them, and what counts as heard.

Vosk's grammar mode only knows words in the model's vocabulary and silently
drops the others (small-cn-0.22 is reported to ignore whole phrases that way),
so each phrase is split into words the model knows: "非常满意" becomes
"非常 满意" when only those two are in the vocabulary. ``[unk]`` soaks up
out-of-grammar speech, and is added only when the model has it.

Grammar mode can still return word sequences that are no phrase at all
("매우 넷"), so an answer counts only when it is exactly one whole phrase,
every word at or above the confidence threshold.

A phrase that is not the start of a longer one (``complete``) may end the
listening as soon as the caller falls quiet after it; one that is ("满意" if
"满意 吧" were a phrase) waits for the recogniser's own end of speech.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

UNKNOWN_WORD = "[unk]"
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """Vosk puts spaces between Chinese words; phrases are compared without any."""
    return _SPACE.sub("", text)


@dataclass(frozen=True)
class RatingGrammar:
    alternatives: tuple[str, ...]  # what Vosk is given, words separated by spaces
    levels: Mapping[str, str]  # normalised phrase: level code
    left_out: tuple[str, ...] = ()  # phrases the model cannot hear (logged by the caller)
    complete: frozenset[str] = frozenset()  # normalised phrases that start no longer phrase

    def ends_a_rating(self, text: str) -> bool:
        """Whether ``text`` (a partial result) is a whole phrase the caller cannot be halfway through."""
        return normalise(text) in self.complete


@dataclass(frozen=True)
class Understood:
    level: str | None  # the level heard, or None
    text: str  # what the recogniser returned
    confidence: float  # the lowest word confidence, 0 when nothing was heard
    why_not: str = ""  # "silence", "out_of_grammar" or "low_confidence" when level is None


def split_into_known_words(phrase: str, known: Callable[[str], bool]) -> list[str] | None:
    """``phrase`` as words the model knows, fewest words first; None when it cannot be done."""
    words: list[str] = []
    for token in phrase.split():
        if known(token):
            words.append(token)
            continue
        pieces = _segment(token, known)
        if pieces is None:
            return None
        words += pieces
    return words or None


def _segment(token: str, known: Callable[[str], bool]) -> list[str] | None:
    @lru_cache(maxsize=None)
    def best(start: int) -> tuple[str, ...] | None:
        if start == len(token):
            return ()
        found: tuple[str, ...] | None = None
        for end in range(len(token), start, -1):
            piece = token[start:end]
            if known(piece) and (rest := best(end)) is not None:
                if found is None or 1 + len(rest) < len(found):
                    found = (piece, *rest)
        return found

    result = best(0)
    return list(result) if result is not None else None


def build_grammar(phrases: Mapping[str, str], known: Callable[[str], bool]) -> RatingGrammar:
    """The grammar for ``phrases`` ({phrase: level code}) from the words ``known`` says the model has."""
    alternatives: list[str] = []
    levels: dict[str, str] = {}
    left_out: list[str] = []
    for phrase, level in phrases.items():
        words = split_into_known_words(phrase, known)
        if words is None:
            left_out.append(phrase)
            continue
        alternatives.append(" ".join(words))
        levels[normalise(phrase)] = level
    complete = frozenset(normalise(a) for a in alternatives if not _starts_another(a, alternatives))
    if alternatives and known(UNKNOWN_WORD):
        alternatives.append(UNKNOWN_WORD)
    return RatingGrammar(tuple(alternatives), levels, tuple(left_out), complete)


def _starts_another(alternative: str, alternatives: list[str]) -> bool:
    words = alternative.split()
    return any(len(other.split()) > len(words) and other.split()[:len(words)] == words for other in alternatives)


def understand(result: Mapping[str, Any], grammar: RatingGrammar, min_confidence: float) -> Understood:
    """Vosk's final result (with ``SetWords``) read against the grammar."""
    words = [w for w in result.get("result") or [] if w.get("word") != UNKNOWN_WORD]
    text = str(result.get("text") or "")
    spoken = normalise(" ".join(str(w.get("word", "")) for w in words)) if words else normalise(text)
    if not spoken:
        return Understood(None, text, 0.0, "silence")
    confidence = min((float(w.get("conf", 0.0)) for w in words), default=0.0)
    level = grammar.levels.get(spoken)
    has_unknown = UNKNOWN_WORD in text.split()
    if level is None or has_unknown:
        return Understood(None, text, confidence, "out_of_grammar")
    if confidence < min_confidence:
        return Understood(None, text, confidence, "low_confidence")
    return Understood(level, text, confidence)
