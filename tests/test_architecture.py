"""SPEC §5's dependency direction, checked on the sources: each part can be read and changed alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"rating_core", "ivr", "callback", "web", "hotline_eval", "speech_models"}
# What each package may import of the project (besides itself).
ALLOWED = {
    "rating_core": set(),
    "ivr": {"rating_core", "speech_models"},
    "callback": {"rating_core", "speech_models"},  # the transcript job decodes voice messages
    "web": {"rating_core"},
    "speech_models": {"rating_core"},
}
PROTOCOLS = ["ivr/agi_protocol.py", "ivr/audiosocket_protocol.py", "callback/ami_protocol.py"]


def project_imports(path: Path) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found & PROJECT


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_a_package_imports_only_what_lies_below_it(package: str) -> None:
    wrong = {str(path.relative_to(ROOT)): sorted(project_imports(path) - ALLOWED[package] - {package})
             for path in (ROOT / package).rglob("*.py")}
    assert {path: names for path, names in wrong.items() if names} == {}


@pytest.mark.parametrize("module", PROTOCOLS)
def test_the_protocol_state_machines_import_nothing_of_the_project(module: str) -> None:
    assert project_imports(ROOT / module) == set()
