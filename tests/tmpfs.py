"""Small real disks for tests: a tmpfs that fills up, or one mounted read-only."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path


def mount(folder: Path, options: str) -> bool:
    """A small tmpfs at ``folder`` (a full disk, a read-only one); False where this host may not mount."""
    folder.mkdir(parents=True, exist_ok=True)
    return subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@contextlib.contextmanager
def mounted(folder: Path, options: str) -> Iterator[bool]:
    """:func:`mount` for the block, unmounted after; yields whether it could be mounted."""
    ok = mount(folder, options)
    try:
        yield ok
    finally:
        if ok:
            subprocess.run(["umount", "-l", str(folder)], check=False)
