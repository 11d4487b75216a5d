"""SPEC §5's dependency direction, checked on the sources: each part can be read and changed alone."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PROJECT = {"protocols", "rating_core", "ivr", "callback", "delivery", "web", "hotline_eval", "speech_models",
           "simulators"}
# What each package may import of the project (besides itself).
ALLOWED = {
    "protocols": set(),  # the wire formats, sans I/O: tested on bytes, shared by servers and simulators
    "rating_core": set(),
    "ivr": {"protocols", "rating_core", "speech_models"},
    # The worker's jobs run the dialer's sweep, the deliveries and the transcript pass.
    "callback": {"protocols", "rating_core", "delivery", "speech_models"},
    "delivery": {"rating_core"},
    "web": {"rating_core"},
    "speech_models": {"rating_core"},
    # The stand-ins speak the protocols the way the real parts do, with the project's own protocol code.
    "simulators": {"protocols", "rating_core", "ivr", "callback", "delivery", "speech_models"},
}
# rating_core's layers, lowest first: each may import those before it, never one after it.
LAYERS = ["rules", "events", "store", "outbox", "complaints", "ratings", "reports"]
# Layers that are plain data and pure functions: the IVR keeps a rating with these alone.
WITHOUT_A_DATABASE = {"rules", "events"}


def module_imports(path: Path) -> set[str]:
    """Every absolute module name ``path`` imports, in full."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
    return found


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


def test_rating_core_is_its_layers_and_nothing_else() -> None:
    """Every module lives in a layer, so that where new code goes is never a question."""
    loose = sorted(path.name for path in (ROOT / "rating_core").glob("*.py") if path.name != "__init__.py")
    assert loose == []
    assert sorted(path.name for path in (ROOT / "rating_core").iterdir()
                  if path.is_dir() and path.name != "__pycache__") == sorted(LAYERS)


@pytest.mark.parametrize("layer", LAYERS)
def test_a_layer_of_rating_core_imports_only_the_layers_below_it(layer: str) -> None:
    above = set(LAYERS[LAYERS.index(layer) + 1:])
    wrong = {}
    for path in (ROOT / "rating_core" / layer).rglob("*.py"):
        names = {name.split(".")[1] for name in module_imports(path)
                 if name.startswith("rating_core.") and len(name.split(".")) > 1}
        if names & above:
            wrong[str(path.relative_to(ROOT))] = sorted(names & above)
    assert wrong == {}


@pytest.mark.parametrize("layer", sorted(WITHOUT_A_DATABASE))
def test_the_rules_and_the_events_need_no_database(layer: str) -> None:
    wrong = {str(path.relative_to(ROOT)): sorted(name for name in module_imports(path)
                                                  if name.split(".")[0] in ("sqlalchemy", "alembic", "psycopg"))
             for path in (ROOT / "rating_core" / layer).rglob("*.py")}
    assert {path: names for path, names in wrong.items() if names} == {}


def imported_modules(path: Path) -> set[str]:
    """The project modules ``path`` imports: ``from a.b import c`` is module a.b.c when c is one."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            folder = ROOT / node.module.replace(".", "/")
            found |= {f"{node.module}.{alias.name}" if (folder / f"{alias.name}.py").exists()
                      or (folder / alias.name).is_dir() else node.module for alias in node.names}
    return {name for name in found if name.split(".")[0] in PROJECT}


@pytest.mark.parametrize("package", ["rating_core", "web"])
def test_no_module_imports_itself_back(package: str) -> None:
    """No import cycle, not even one hidden in a function's body: each module can be read before those
    that read it (the events and their application were such a pair, the 补充评价 page and the intake
    another, the supervisors' page modules a third, the blueprints and the app factory a fourth)."""
    graph = {".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__"): imported_modules(path)
             for path in (ROOT / package).rglob("*.py")}
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            cycles.append(trail[trail.index(module):] + [module])
        elif module not in done:
            done.add(module)
            for imported in sorted(graph.get(module, ())):
                visit(imported, trail + [module])

    for module in sorted(graph):
        visit(module, [])
    assert cycles == []


# Where a process starts, and so where the environment is read: the command line, the web app factory,
# the worker's jobs (RQ runs them by name in a process of its own).
EDGES = {"hotline_eval", "web/__init__.py", "callback/jobs.py"}


def _at_an_edge(path: Path) -> bool:
    relative = path.relative_to(ROOT).as_posix()
    return relative.split("/")[0] in EDGES or relative in EDGES


def test_the_environment_is_read_only_at_the_edges() -> None:
    """One Settings, built where a process starts and passed down: nothing below reads a variable itself."""
    reads, settings_built = {}, {}
    for package in sorted(PROJECT):
        for path in (ROOT / package).rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            names = {f"os.{node.attr}" for node in ast.walk(tree) if isinstance(node, ast.Attribute)
                     and isinstance(node.value, ast.Name) and node.value.id == "os"
                     and node.attr in ("environ", "getenv", "putenv", "environb")}
            names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                      and node.module == "os" for alias in node.names if alias.name in ("environ", "getenv")}
            built = any(isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "Settings"
                        for node in ast.walk(tree))
            if names and package != "hotline_eval":
                reads[str(path.relative_to(ROOT))] = sorted(names)
            if built and not _at_an_edge(path):
                settings_built[str(path.relative_to(ROOT))] = True
    assert reads == {} and settings_built == {}
