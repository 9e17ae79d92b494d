# Copyright (C) 2026 anomalib-gaussft developers
# SPDX-License-Identifier: Apache-2.0

"""The package's shape: no import cycles between subpackages, no arrow from the method to tooling, small modules."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "anomalib_gaussft"
#: What the method is made of (the paper, its forgetting callback, weights, the scoring helpers, demo data) ...
METHOD = frozenset({"model", "forgetting", "weights", "evaluation", "data"})
#: ... never imports the tooling built on it.
TOOLING = frozenset({"benchmark", "cli", "tools"})
MAX_LINES = 400


def _unit(path: Path) -> str:
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imported_units(path: Path) -> set[str]:
    units = set()
    for node in ast.walk(ast.parse(path.read_text())):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module]
        for name in names:
            parts = name.split(".")
            if parts[0] == "anomalib_gaussft" and len(parts) > 1:
                units.add(parts[1])
            elif parts[0] == "tools":
                units.add("tools")
    return units


def _modules() -> list[Path]:
    return sorted(path for path in PACKAGE.rglob("*.py") if path.name != "__init__.py" or path.parent != PACKAGE)


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_the_method_never_imports_tooling(path: Path) -> None:
    if _unit(path) in METHOD:
        wrong = _imported_units(path) & TOOLING
        assert not wrong, f"{path.relative_to(ROOT)} imports tooling: {sorted(wrong)}"


def _unit_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in _modules():
        unit = _unit(path)
        graph.setdefault(unit, set()).update(_imported_units(path) - {unit})
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of the graph as a list of units, or ``None``."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(unit: str, path: list[str]) -> list[str] | None:
        state[unit] = 1
        for other in sorted(graph.get(unit, ())):
            if state.get(other) == 1:
                return [*path[path.index(other) :], other] if other in path else [unit, other]
            if state.get(other) is None and (found := visit(other, [*path, other])):
                return found
        state[unit] = 2
        return None

    for unit in sorted(graph):
        if state.get(unit) is None and (found := visit(unit, [unit])):
            return found
    return None


def test_subpackages_import_each_other_without_cycles() -> None:
    graph = _unit_graph()
    assert graph["model"] <= {"weights", "forgetting"}  # forgetting: the default callback, imported when configured
    assert "model" not in graph.get("forgetting", set())  # the callback works with any anomalib model
    assert _cycle(graph) is None, f"import cycle: {' -> '.join(_cycle(graph))}"


def test_the_cycle_check_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_the_layer_check_catches_a_wrong_arrow(tmp_path: Path) -> None:
    module = tmp_path / "module.py"
    module.write_text("from anomalib_gaussft.benchmark import run\nimport tools.loss_dynamics\n")
    assert _imported_units(module) == {"benchmark", "tools"}


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_module_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_the_wheel_holds_the_package_and_no_study(tmp_path: Path) -> None:
    """Only ``anomalib_gaussft/`` and the registration hook go into the wheel; ``tools/`` stays in the repository."""
    tomllib = pytest.importorskip("tomllib")
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["hatch"]["build"]["targets"]["wheel"]
    assert config["packages"] == ["anomalib_gaussft"]
    assert not any("tools" in source for source in config.get("force-include", {}))
    assert not any(path.stem.endswith("_study") for path in PACKAGE.rglob("*.py"))
