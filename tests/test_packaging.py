"""What `pip install` puts on a server: every file the code reads from its own folders is in the wheel.

A production install (README, "Running it in production") installs the package, not a checkout, so a data file
left out of ``[tool.setuptools.package-data]`` is missing only there: the sound manifests were, and
``prompts build`` then refused every sound on the first install. The wheel is built from a copy of this
checkout's files and compared with the files the packages hold.
"""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

from release import copy_release, sources

PACKAGES = ("protocols", "rating_core", "ivr", "callback", "delivery", "web", "speech_models", "simulators",
            "hotline_eval")


def test_the_wheel_carries_every_file_the_packages_hold(tmp_path: Path) -> None:
    files = sources()
    expected = {name for name in files if name.split("/", 1)[0] in PACKAGES}
    assert any(name.endswith("manifest.json") for name in expected)
    # Built from a copy of those files: a build/ folder or an egg-info left in the checkout by an earlier build
    # would otherwise lend the wheel what the package data no longer names.
    tree = copy_release(tmp_path / "tree", files)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                            "-w", str(tmp_path / "dist"), str(tree)], capture_output=True, text=True)
    assert built.returncode == 0, built.stderr[-2000:]
    [wheel] = (tmp_path / "dist").glob("hotline_eval-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        packed = set(archive.namelist())
    assert sorted(expected - packed) == []
