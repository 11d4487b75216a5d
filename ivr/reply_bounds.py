"""How long an AGI command may go without its reply before the peer counts as gone.

One bound for every command had to fit the longest (a voice message), so a peer
that stopped answering a GET VARIABLE held the call for 300 s. Each command gets
its own length instead, read from its arguments where it carries one, plus slack
for a busy Asterisk; a command that answers at once gets a short bound.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class ReplyBounds:
    """The seconds the rules in :data:`COMMAND_LENGTHS` are made of; tests shrink them."""

    # A command that answers at once (GET VARIABLE, ANSWER, SET VARIABLE, HANGUP, …): tens of seconds
    # still allow for a PBX under load.
    immediate: float = 20.0
    # Added to a command's own length: Asterisk opening files, a beep, a loaded machine.
    slack: float = 20.0
    # One sound file: the session is given a name, not a length, and prompts are a few seconds long.
    prompt: float = 120.0
    # EXEC AudioSocket lasts as long as our AudioSocket server listens (a hotline's listen_seconds, a few
    # seconds), which the command does not say.
    listening: float = 120.0
    # A command with no cap of its own (a timeout of -1, Record() with no maximum, an application not in
    # the table): the flows here send none; as long as the longest message the rules allow (600 s).
    uncapped: float = 600.0

    def for_command(self, words: Sequence[str | int]) -> float:
        """Seconds to wait for the reply to ``words``, as sent to Asterisk."""
        text = [str(w) for w in words]
        head = tuple(w.upper() for w in text)
        for prefix, length in COMMAND_LENGTHS.items():
            if head[:len(prefix)] == prefix:
                return length(text[len(prefix):], self) + self.slack
        if head[:1] == ("EXEC",):
            return self.uncapped + self.slack  # an application we do not know may run for any length
        return self.immediate


Length = Callable[[Sequence[str], ReplyBounds], float]  # (the arguments after the command's words, the bounds)


def _argument(args: Sequence[str], index: int, per_second: int) -> float | None:
    """The argument as seconds (``per_second`` units to one), or None when absent or not a positive number."""
    try:
        value = int(args[index])
    except (IndexError, ValueError):
        return None
    return value / per_second if value > 0 else None


def _files(sounds: str, bounds: ReplyBounds) -> float:
    """``a&b&c`` plays three files back to back."""
    return bounds.prompt * len(sounds.split("&"))


def _get_data(args: Sequence[str], bounds: ReplyBounds) -> float:
    # GET DATA <file> <timeout ms> <max digits>: the prompt, then up to the timeout before each digit.
    timeout, digits = _argument(args, 1, 1000), _argument(args, 2, 1)
    if not args or timeout is None or digits is None:
        return bounds.uncapped  # Asterisk's defaults: its own digit timeout, up to 1024 digits
    return _files(args[0], bounds) + timeout * digits


def _wait_for_digit(args: Sequence[str], bounds: ReplyBounds) -> float:
    # WAIT FOR DIGIT <timeout ms>; -1 waits for ever.
    timeout = _argument(args, 0, 1000)
    return bounds.uncapped if timeout is None else timeout


def _record_file(args: Sequence[str], bounds: ReplyBounds) -> float:
    # RECORD FILE <file> <format> <escape digits> <timeout ms> [offset] [BEEP] [s=silence]; -1: no cap.
    timeout = _argument(args, 3, 1000)
    return bounds.uncapped if timeout is None else timeout


def _exec_data(args: Sequence[str]) -> list[str]:
    """EXEC's data (the rest of the line) split into the application's comma-separated arguments."""
    return " ".join(args).split(",")


def _playback(args: Sequence[str], bounds: ReplyBounds) -> float:
    # EXEC Playback <file[&file…]>[,options]
    return _files(_exec_data(args)[0], bounds)


def _record(args: Sequence[str], bounds: ReplyBounds) -> float:
    # EXEC Record <file.format>,<silence s>,<max s>,<options>; a max of 0 or none: no cap.
    maximum = _argument(_exec_data(args), 2, 1)
    return bounds.uncapped if maximum is None else maximum


# What a command's own length is, by its first words (upper case; applications are case-insensitive in
# Asterisk). Every command not here answers at once, except EXEC of another application (uncapped).
COMMAND_LENGTHS: dict[tuple[str, ...], Length] = {
    ("STREAM", "FILE"): lambda args, bounds: bounds.prompt,
    ("GET", "DATA"): _get_data,
    ("WAIT", "FOR", "DIGIT"): _wait_for_digit,
    ("RECORD", "FILE"): _record_file,
    ("EXEC", "PLAYBACK"): _playback,
    ("EXEC", "RECORD"): _record,
    ("EXEC", "AUDIOSOCKET"): lambda args, bounds: bounds.listening,
}
