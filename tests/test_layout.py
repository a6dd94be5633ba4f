"""The layout holds: rooms import only the rooms below them, the core does no I/O, every room
says its job, and no module or function outgrows what a person can hold (docs/architecture.md).
"""

from __future__ import annotations

import ast
import subprocess
import sys
import textwrap
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
LINTER = PYPROJECT["tool"]["importlinter"]
LINT_IMPORTS = Path(sys.executable).parent / "lint-imports"

#: The bounds of issue 11: a module a person can read, a function a person can hold.
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 120
#: Folders of code with no bound: tests, and what is built or vendored rather than written.
UNBOUNDED = {"tests", "build", "deploy", "docs", "examples"}


def rooms() -> list[str]:
    """Every top-level folder that is a Python package."""
    return sorted(p.parent.name for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests")


def layered() -> set[str]:
    names: set[str] = set()
    for contract in LINTER["contracts"]:
        for layer in contract.get("layers", ()):
            names.update(part.strip() for part in layer.replace(":", "|").split("|"))
    return names


def test_every_room_is_placed_in_the_layers() -> None:
    """A new folder must be given its place (or the check would not cover it)."""
    assert set(rooms()) == set(LINTER["root_packages"]) == layered()


def test_no_room_imports_a_room_above_it_and_the_core_is_pure() -> None:
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    kept = [c["name"] for c in LINTER["contracts"]]
    for name in kept:
        assert f"{name} KEPT" in result.stdout


def test_the_check_fails_on_an_upward_import(tmp_path: Path) -> None:
    """The same tool and contract shape on two rooms where the lower imports the upper."""
    for name, body in {"top": "", "bottom": "import top\n"}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text(body)
    (tmp_path / "pyproject.toml").write_text(
        textwrap.dedent(
            """
            [tool.importlinter]
            root_packages = ["top", "bottom"]

            [[tool.importlinter.contracts]]
            name = "layers"
            type = "layers"
            layers = ["top", "bottom"]
            """
        )
    )
    result = subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(tmp_path), "PATH": str(LINT_IMPORTS.parent)},
    )
    assert result.returncode == 1 and "bottom is not allowed to import top" in result.stdout


@pytest.mark.parametrize("room", rooms())
def test_every_room_says_its_job_in_one_line(room: str) -> None:
    source = (ROOT / room / "__init__.py").read_text()
    doc = ast.get_docstring(ast.parse(source))
    assert doc, f"{room}/__init__.py has no docstring"
    assert len(doc.splitlines()) == 1 and len(doc) > 20, doc


def product_files() -> list[Path]:
    return sorted(
        p
        for p in ROOT.rglob("*.py")
        if p.relative_to(ROOT).parts[0] not in UNBOUNDED and ".venv" not in p.parts
    )


def oversize(path: Path, root: Path = ROOT) -> list[str]:
    """What in ``path`` is over the bounds, each with its place and size."""
    source = path.read_text()
    where = path.relative_to(root)
    found = []
    if (lines := source.count("\n")) > MAX_MODULE_LINES:
        found.append(f"{where}: {lines} lines")
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            if length > MAX_FUNCTION_LINES:
                found.append(f"{where}:{node.lineno} {node.name}: {length} lines")
    return found


def test_no_module_or_function_outgrows_the_bounds() -> None:
    files = product_files()
    assert len(files) > 50  # the walk found the code
    assert [problem for path in files for problem in oversize(path)] == []


def test_the_size_check_sees_a_long_function(tmp_path: Path) -> None:
    long = tmp_path / "long.py"
    long.write_text("def f() -> None:\n" + "    x = 1\n" * MAX_FUNCTION_LINES)
    assert oversize(long, tmp_path) == [f"long.py:1 f: {MAX_FUNCTION_LINES + 1} lines"]
