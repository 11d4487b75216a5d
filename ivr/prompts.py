"""Builds the prompt audio (8 kHz mono 16-bit WAV, what Asterisk plays natively) from the rules' texts.

Synthetic Mandarin (and Korean, for a hotline whose ``prompt_voice`` is ``ko``)
is a placeholder until a centre records its own voice: drop a recording with
the same name into the sound folder and it is used instead.
Each sound folder's ``manifest.json`` says what each sound says, and which file
(sha256) that is known of, so that a changed text (a new callback policy's
promise) is synthesised again, or refused where it would leave a recording
saying the old one, rather than played stale.
espeak-ng's plain ``cmn`` voice in Debian's 1.51 reads tone numbers as
English, so the text goes through pypinyin into the ``cmn-latn-pinyin`` voice.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import wave
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from pypinyin import Style, lazy_pinyin

from rating_core.rules.rulebook import HotlineProfile

SOUNDS_DIR = Path(__file__).with_name("sounds")
VOICE = "cmn-latn-pinyin"
DIGITS = dict(zip("0123456789", "零一二三四五六七八九"))
KOREAN_VOICE = "ko"
KOREAN_DIGITS = "영일이삼사오육칠팔구"
# The spoken months that are not number + 월: 육월 and 십월 are said 유월 and 시월.
KOREAN_MONTHS = {6: "유월", 10: "시월"}
SYMBOLS = {"*": "星号", "#": "井号", "/": "或"}
MANIFEST = "manifest.json"  # in each sound folder: {name: {text, sha256, recorded}}


class PromptBuildError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuiltPrompt:
    folder: str
    name: str
    path: Path
    seconds: float
    recorded: bool = False  # a centre's recording, kept because it still says the prompt's text


@dataclass(frozen=True)
class SoundTexts:
    """What every sound folder of some hotlines should say: prompts by hotline, date fragments by folder."""

    texts: dict[str, dict[str, str]]  # folder: {sound name: text}
    voices: dict[str, str]  # folder: prompt voice
    fragments: frozenset[str]  # the date folders, whose sounds are spoken back to back


def speakable(text: str) -> str:
    """Digits and key symbols as Chinese words, so the pinyin voice reads them in Mandarin."""

    def number(match: re.Match[str]) -> str:
        run = match.group()
        spoken = "".join(DIGITS[d] for d in run)
        # Service numbers (12345, 12333) are read digit by digit with 一 as 幺, as the hotlines say them.
        return spoken.replace("一", "幺") if len(run) >= 3 else spoken

    return "".join(SYMBOLS.get(ch, ch) for ch in re.sub(r"[0-9]+", number, text))


def to_pinyin(text: str) -> str:
    """Tone-numbered pinyin with punctuation kept as pauses, e.g. ``nin2 hao3 , …``."""
    words = lazy_pinyin(speakable(text), style=Style.TONE3, neutral_tone_with_five=True)
    return " ".join(w if w.strip() else "" for w in words).replace("，", ",").replace("。", ".").replace("、", ",")


def _date_number(n: int, digits: str, ten: str) -> str:
    """1–99 the way Chinese and Sino-Korean both say them in dates: [digit] ten [digit]."""
    tens, units = divmod(n, 10)
    if not 0 < n < 100:
        raise ValueError(f"{n} is not a day or month number")
    return (digits[tens] if tens > 1 else "") + (ten if tens else "") + (digits[units] if units else "")


def chinese_number(n: int) -> str:
    """1–99 as spoken in dates: 十, 十五, 二十一, 三十."""
    return _date_number(n, "".join(DIGITS.values()), "十")


def korean_number(n: int) -> str:
    """1–99 in Sino-Korean, as dates say them: 일, 십, 십오, 이십일, 삼십."""
    return _date_number(n, KOREAN_DIGITS, "십")


def date_prompts(voice: str = VOICE) -> dict[str, str]:
    """The fragments a callback speaks the rating's date with, in the prompt voice's language:
    month_3 "三月" / "삼월", day_15 "十五日" / "십오일"."""
    if voice == VOICE:
        months = {f"month_{m}": f"{chinese_number(m)}月" for m in range(1, 13)}
        return months | {f"day_{d}": f"{chinese_number(d)}日" for d in range(1, 32)}
    if voice == KOREAN_VOICE:
        months = {f"month_{m}": KOREAN_MONTHS.get(m, f"{korean_number(m)}월") for m in range(1, 13)}
        return months | {f"day_{d}": f"{korean_number(d)}일" for d in range(1, 32)}
    raise PromptBuildError(f"no spoken dates for prompt voice {voice!r} (known: {VOICE}, {KOREAN_VOICE})")


def sound_texts(profiles: Iterable[HotlineProfile]) -> SoundTexts:
    """The texts of the profiles' prompts and of their date fragments, by sound folder."""
    profiles = list(profiles)
    texts = {profile.code: dict(profile.prompts) for profile in profiles}
    voices = {profile.code: profile.prompt_voice for profile in profiles}
    fragments: dict[str, str] = {}  # date folder: the voice its hotlines speak
    for profile in profiles:
        folder = Path(profile.verification.date_sound_dir).name
        if fragments.setdefault(folder, profile.prompt_voice) != profile.prompt_voice:
            raise PromptBuildError(f"hotline {profile.code}: date_sound_dir {profile.verification.date_sound_dir} "
                                   f"is spoken in {fragments[folder]} by another hotline; give it its own")
    texts |= {folder: date_prompts(voice) for folder, voice in fragments.items()}
    return SoundTexts(texts, voices | fragments, frozenset(fragments))


def build_prompts(profiles: list[HotlineProfile], out_dir: Path = SOUNDS_DIR,
                  recorded: Iterable[str] = ()) -> list[BuiltPrompt]:
    """Synthesise every prompt of every profile into ``out_dir/<hotline>/<name>.wav``, and the date fragments.

    A sound build did not make (its manifest entry names another file, or a ``recorded`` "folder/name") is a
    centre's recording: kept while its text is the prompt's, refused before anything is synthesised when the
    text has changed, since playing it would say the old words (a promise the callback policy no longer gives).
    """
    for tool in ("espeak-ng", "sox"):
        if shutil.which(tool) is None:
            raise PromptBuildError(f"{tool} is not installed (Debian: apt-get install espeak-ng sox)")
    wanted = sound_texts(profiles)
    manifests = {folder: read_manifest(out_dir / folder) for folder in wanted.texts}
    recorded = set(recorded)
    unknown = sorted(recorded - {f"{folder}/{name}" for folder, texts in wanted.texts.items() for name in texts})
    if unknown:
        raise PromptBuildError(f"--recorded names no sound of these hotlines: {', '.join(unknown)}")
    kept: dict[tuple[str, str], dict[str, object]] = {}
    refused = []
    for folder, texts in wanted.texts.items():
        for name, text in texts.items():
            path = out_dir / folder / f"{name}.wav"
            if not path.exists():
                if f"{folder}/{name}" in recorded:
                    refused.append(f"{path}: --recorded, but there is no such file")
                continue
            entry, sha = manifests[folder].get(name), file_sha256(path)
            ours = entry is not None and entry.get("sha256") == sha and not entry.get("recorded")
            if f"{folder}/{name}" in recorded or (not ours and entry is not None and entry.get("text") == text):
                kept[folder, name] = {"text": text, "sha256": sha, "recorded": True}
            elif not ours:
                said = f"says “{entry['text']}”" if entry is not None else "is not in its manifest"
                refused.append(f"{path}: not made by prompts build, {said}; the rules say “{text}”")
    if refused:
        raise PromptBuildError(
            "these sounds would not say their prompt's text; record the text and name each with --recorded "
            "FOLDER/NAME, or delete them to have them synthesised:\n  " + "\n  ".join(refused))
    built = []
    with tempfile.TemporaryDirectory() as tmp:
        for folder, texts in wanted.texts.items():
            target = out_dir / folder
            target.mkdir(parents=True, exist_ok=True)
            for name, text in texts.items():
                path = target / f"{name}.wav"
                if (folder, name) in kept:
                    manifests[folder][name] = kept[folder, name]
                    built.append(BuiltPrompt(folder, name, path, wav_seconds(path), recorded=True))
                    continue
                raw = Path(tmp) / f"{folder}-{name}.wav"
                voice = wanted.voices.get(folder, VOICE)
                spoken = to_pinyin(text) if voice == VOICE else text
                _run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(raw), spoken])
                # Fragments are spoken back to back, so their leading and trailing silence goes.
                trim = ["silence", "1", "0.02", "1%", "reverse", "silence", "1", "0.02", "1%", "reverse"]
                _run(["sox", str(raw), "-r", "8000", "-c", "1", "-b", "16", "-e", "signed-integer", str(path),
                      *(trim if folder in wanted.fragments else []), "norm", "-3"])
                manifests[folder][name] = {"text": text, "sha256": file_sha256(path), "recorded": False}
                built.append(BuiltPrompt(folder, name, path, wav_seconds(path)))
            write_manifest(target, manifests[folder])
    return built


def stale_sounds(profiles: Iterable[HotlineProfile], out_dir: Path = SOUNDS_DIR) -> list[str]:
    """The sounds under ``out_dir`` that do not say what the rules say now, each with why (empty: all do)."""
    stale = []
    for folder, texts in sound_texts(profiles).texts.items():
        manifest = read_manifest(out_dir / folder)
        for name, text in texts.items():
            path, entry = out_dir / folder / f"{name}.wav", manifest.get(name)
            if not path.exists():
                stale.append(f"{path}: missing")
            elif entry is None:
                stale.append(f"{path}: not in {MANIFEST}, what it says is not known")
            elif entry.get("text") != text:
                stale.append(f"{path}: says “{entry.get('text')}”; the rules say “{text}”")
    return stale


def read_manifest(folder: Path) -> dict[str, dict[str, object]]:
    path = folder / MANIFEST
    if not path.exists():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise PromptBuildError(f"cannot read {path}: {exc}") from exc


def write_manifest(folder: Path, entries: dict[str, dict[str, object]]) -> None:
    text = json.dumps(entries, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    (folder / MANIFEST).write_text(text, encoding="utf-8")


def file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


def sound_lengths(out_dir: Path = SOUNDS_DIR) -> dict[str, float]:
    """Lengths of the built prompts by Asterisk sound name (``hotline-eval/12345/menu``)."""
    return {f"hotline-eval/{p.parent.name}/{p.stem}": wav_seconds(p) for p in sorted(out_dir.glob("*/*.wav"))}


def _run(command: list[str]) -> None:
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode != 0:
        raise PromptBuildError(f"{command[0]} failed ({done.returncode}): {done.stderr.strip()[:300]}")
