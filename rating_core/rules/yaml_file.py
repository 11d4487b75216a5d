"""Reading a deployment's YAML file (the rules, the scoring schemes, the quality rubric, an outbound profile).

Each has its own error class, the one its callers catch; what they share is how a file that cannot be read,
or is not YAML, is told apart from one whose content is wrong.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def read_yaml(path: Path, error: type[Exception], what: str) -> Any:
    """The parsed document of ``path``; ``error`` naming ``what`` (e.g. "rules file") and the path if the file
    cannot be read or is not valid YAML."""
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise error(f"cannot read {what} {path}: {exc}") from exc
    except yaml.YAMLError as exc:
        raise error(f"{what} {path} is not valid YAML: {exc}") from exc
