"""The mypyc-compiled core (what the benchmark measures) behaves exactly like the source."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from govclock.compiled import build_compiled_core, compiled_env

ROOT = Path(__file__).resolve().parent.parent

# Runs inside the compiled build: replays the sample and a synthetic year, prints the result.
SCRIPT = """
import json, sys
from datetime import timedelta
import deadlines.ledger as ledger_module
from deadlines.calendar import WorkCalendar
from deadlines.ledger import Ledger
from deadlines.replay import replay
from govclock.bench import Mix, T0, _book
from govclock.cli import replay_report, run_replay
from config.packs import load_rulebook
from schemas.events import EVENT_ADAPTER

from pathlib import Path
root = Path(sys.argv[1])
book = load_rulebook(units_file=root / "examples" / "units.yaml")
history = root / "examples" / "sample-history.jsonl"
report = replay_report(run_replay(history, None, book, WorkCalendar.official()), history)
events = [(i, EVENT_ADAPTER.validate_python(e)) for i, e in enumerate(Mix(3).history(4000, 60))]
result = replay(Ledger(_book(50), WorkCalendar.official()), events,
                int((T0 + timedelta(days=90)).timestamp()), start=int(T0.timestamp()))
print(json.dumps({
    "module": ledger_module.__file__,
    "report": report,
    "effects": [list(e) for e in result.effects],
}, ensure_ascii=False, sort_keys=True))
"""


@pytest.fixture(scope="module")
def compiled_target() -> Path:
    return build_compiled_core()


def run_script(env: dict[str, str] | None, cwd: Path) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(ROOT)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=True,
        timeout=300,
    )
    data: dict[str, object] = json.loads(out.stdout)
    return data


def test_compiled_core_gives_identical_reports_and_effects(compiled_target: Path) -> None:
    compiled = run_script(compiled_env(compiled_target), compiled_target)
    interpreted = run_script(None, ROOT)
    assert str(compiled["module"]).endswith(".so"), compiled["module"]
    assert str(interpreted["module"]).endswith("ledger.py"), interpreted["module"]
    assert compiled["report"] == interpreted["report"]
    assert len(compiled["effects"]) > 1000  # type: ignore[arg-type]
    assert compiled["effects"] == interpreted["effects"]


def test_build_is_reused_while_sources_are_unchanged(compiled_target: Path) -> None:
    stamp = compiled_target / ".source-digest"
    before = stamp.stat().st_mtime_ns
    assert build_compiled_core() == compiled_target
    assert stamp.stat().st_mtime_ns == before
