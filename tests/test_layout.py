"""The house's layout holds: imports run one way, down the packages of `agent/` (each package's docstring says
what it may import), and every package says in its docstring what lives there."""

from __future__ import annotations

import ast
from pathlib import Path

AGENT = Path(__file__).parent.parent / "agent"

# what each package may import of `agent`, top to bottom (a package may always import itself)
MAY_IMPORT: dict[str, set[str]] = {
    "run": {"room", "loops", "providers", "settings", "telemetry", "language"},
    "room": {"loops", "providers", "settings", "telemetry", "language"},
    "loops": {"providers", "settings", "telemetry", "language"},
    "providers": {"settings", "telemetry", "language"},
    "settings": {"language"},
    "telemetry": set(),
    "language": set(),
}


def _agent_imports(path: Path) -> list[tuple[int, str]]:
    """(line, package) for every `agent.<package>` this file imports, wherever the import stands."""
    return [(line, module.split(".")[1]) for line, module in _agent_modules(path)]


def _agent_modules(path: Path) -> list[tuple[int, str]]:
    """(line, module) for every `agent.…` module this file imports, wherever the import stands."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            modules = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "agent":
            modules = [f"agent.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules = [node.module]
        else:
            continue
        found += [(node.lineno, m) for m in modules if m.startswith("agent.")]
    return found


def test_every_module_of_agent_lives_in_a_package_but_the_entry_point():
    loose = sorted(p.name for p in AGENT.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert loose == []
    assert {p.name for p in AGENT.iterdir() if p.is_dir() and (p / "__init__.py").exists()} == set(MAY_IMPORT)


def test_imports_run_one_way_down_the_packages():
    wrong = []
    for package, allowed in MAY_IMPORT.items():
        for path in sorted((AGENT / package).rglob("*.py")):
            for line, imported in _agent_imports(path):
                if imported != package and imported not in allowed:
                    wrong.append(f"{path.relative_to(AGENT.parent)}:{line} imports agent.{imported}")
    assert wrong == []


def test_the_ears_the_brain_and_the_mouth_never_import_one_another():
    loops = ("ears", "brain", "mouth")
    wrong = []
    for loop in loops:
        for path in sorted((AGENT / "loops" / loop).rglob("*.py")):
            for line, module in _agent_modules(path):
                other = module.split(".")[2] if module.startswith("agent.loops.") else loop
                if other in loops and other != loop:
                    wrong.append(f"{path.relative_to(AGENT.parent)}:{line} imports {module}")
    assert wrong == []


def test_every_package_says_what_lives_there_and_what_it_may_import():
    for package in MAY_IMPORT:
        doc = ast.get_docstring(ast.parse((AGENT / package / "__init__.py").read_text()))
        assert doc and "import" in doc, package
    for loop in ("ears", "brain", "mouth"):
        doc = ast.get_docstring(ast.parse((AGENT / "loops" / loop / "__init__.py").read_text()))
        assert doc and "import" in doc, loop
