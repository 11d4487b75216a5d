"""A release of this checkout as a centre receives it: its files (committed or not, without what .gitignore leaves
out: build/, *.egg-info, .venv …) copied into a folder of their own, so that what is built from it cannot borrow
what an earlier build left in the checkout."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def sources() -> list[str]:
    """The checkout's files, as paths relative to it."""
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True)
    return [name for name in listed.stdout.splitlines() if (ROOT / name).is_file()]


def copy_release(into: Path, files: list[str] | None = None) -> Path:
    """``files`` (all of :func:`sources` by default) copied under ``into``; ``into``."""
    for name in sources() if files is None else files:
        (into / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, into / name)
    return into
