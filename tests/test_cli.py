"""The ``govclock`` command: run, the table format, schemas, bench, help; make run / make test."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from govclock.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample-history.jsonl"
UNITS = ROOT / "examples" / "units.yaml"
SUBCOMMANDS = ("run", "demo", "replay", "rules", "bench", "schemas")
STATUS_MARK = {
    "met": "met",
    "late": "LATE",
    "missed": "MISSED",
    "unverifiable": "unverifiable",
    "pending": "pending",
    "paused": "paused",
    "cancelled": "cancelled",
}


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def obligation_rows(table_text: str) -> list[list[str]]:
    """The rows of the first table (the obligations): after the dashes, up to a blank line."""
    lines = table_text.splitlines()
    start = next(i for i, ln in enumerate(lines) if ln.startswith("status "))
    assert set(lines[start + 1].replace(" ", "")) == {"-"}
    rows = []
    for ln in lines[start + 2 :]:
        if not ln.strip():
            break
        rows.append(ln.split())
    return rows


def section(text: str, title: str) -> list[list[str]]:
    """The data rows of a titled table (``on-time by unit``) as split cells."""
    lines = text.splitlines()
    start = lines.index(title)
    rows = []
    for ln in lines[start + 3 :]:
        if not ln.strip():
            break
        rows.append(ln.split())
    return rows


# -- run ----------------------------------------------------------------------------------


def test_run_prints_the_sample_report(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "demo")
    assert code == 0
    assert out.startswith("govclock report as of 2026-04-07 10:00 (Asia/Shanghai)\n")
    assert "events: 36 applied, 1 duplicates ignored, 1 rejected, 0 after as-of" in out
    assert "\non-time by unit\n" in out and "\non-time by rule\n" in out
    assert "overall on-time rate: 63% (12 met of 19 decided)" in out
    assert "rejected line 26: severity" in out

    units = {row[0]: row for row in section(out, "on-time by unit")}
    assert set(units) == {"sh-gov", "sh-jiaowei", "sh-yingji", "xy-county", "zz-fgw"}
    assert units["xy-county"][1:] == ["0", "0", "1", "0", "0", "0%"]  # annual report, 02-20
    # unit  met late missed unverif. open on-time
    assert units["sh-jiaowei"] == ["sh-jiaowei", "3", "2", "2", "0", "0", "43%"]
    assert units["zz-fgw"][-1] == "100%"
    rules = {row[0]: row for row in section(out, "on-time by rule")}
    assert rules["power_list_10wd"][-1] == "0%"
    assert rules["first_release_5h"][1:] == ["1", "0", "0", "1", "0", "100%"]


def test_run_is_the_replay_of_the_bundled_sample(capsys: pytest.CaptureFixture[str]) -> None:
    _, run_out, _ = cli(capsys, "demo")
    code, replay_out, err = cli(capsys, "replay", str(SAMPLE), "--units", str(UNITS))
    assert code == 0
    assert run_out == replay_out
    assert f"{SAMPLE}:26: rejected:" in err


def test_run_as_of(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "demo", "--as-of", "2026-03-10")
    assert code == 0
    assert out.startswith("govclock report as of 2026-03-10 23:59 (Asia/Shanghai)\n")
    assert "18 after as-of" in out


def test_run_end_to_end() -> None:
    script = Path(sys.executable).with_name("govclock")
    if not script.exists():
        pytest.skip("govclock script not installed next to the interpreter")
    proc = subprocess.run(
        [str(script), "demo"], capture_output=True, text=True, timeout=60, check=False
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("govclock report as of ")
    assert "overall on-time rate: " in proc.stdout


def test_closed_stdout_is_not_reported_as_an_error() -> None:
    """``govclock replay ... | head``: the reader going away is no usage error (exit 2)."""
    script = Path(sys.executable).with_name("govclock")
    if not script.exists():
        pytest.skip("govclock script not installed next to the interpreter")
    proc = subprocess.Popen(
        [str(script), "replay", str(SAMPLE), "--format", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # before the child has written anything: its first write fails
    err = proc.stderr.read()
    proc.stderr.close()
    assert proc.wait(timeout=60) == 1
    assert "Broken pipe" not in err and "Traceback" not in err, err


# -- table format -------------------------------------------------------------------------------


@pytest.mark.parametrize("as_of", [None, "2026-03-10"])
def test_table_has_one_row_per_obligation(
    capsys: pytest.CaptureFixture[str], as_of: str | None
) -> None:
    extra = ["--as-of", as_of] if as_of else []
    code, out, _ = cli(
        capsys, "replay", str(SAMPLE), "--units", str(UNITS), "--format", "json", *extra
    )
    assert code == 0
    obligations: list[dict[str, Any]] = json.loads(out)["obligations"]
    code, table, _ = cli(
        capsys, "replay", str(SAMPLE), "--units", str(UNITS), "--format", "table", *extra
    )
    assert code == 0
    rows = obligation_rows(table)
    assert len(rows) == len(obligations)
    for row, ob in zip(rows, obligations, strict=True):
        mark = STATUS_MARK[ob["status"]] + ("*" if ob["calendar_assumed"] else "")
        assert row[:4] == [mark, ob["rule_id"], ob["subject_id"], ob["unit"]]
        if ob["fulfilled_by"]:
            assert row[-1] == ob["fulfilled_by"]


def test_table_is_the_default_format(capsys: pytest.CaptureFixture[str]) -> None:
    _, default, _ = cli(capsys, "replay", str(SAMPLE), "--units", str(UNITS))
    _, table, _ = cli(capsys, "replay", str(SAMPLE), "--units", str(UNITS), "--format", "table")
    assert default == table
    assert default.startswith("govclock report as of ")


def test_table_shows_date_only_fulfilment_as_a_date(capsys: pytest.CaptureFixture[str]) -> None:
    _, out, _ = cli(capsys, "demo")
    rows = {(r[1], r[2]): r for r in obligation_rows(out)}
    # unverifiable  first_release_5h  I-2026-045  sh-yingji  opened  due  2026-03-20  feed-0002
    row = rows[("first_release_5h", "I-2026-045")]
    assert row[-2:] == ["2026-03-20", "feed-0002"]
    assert row[0] == "unverifiable"


def test_unknown_format_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["replay", str(SAMPLE), "--format", "csv"])
    assert exc.value.code == 2
    assert "--format" in capsys.readouterr().err


# -- rules ----------------------------------------------------------------------------------


def test_rules_show_and_list(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "rules", "show", "online_posting_10wd")
    assert code == 0
    assert "10 WD" in out and "sources:" in out
    code, out, _ = cli(capsys, "rules", "list", "--units", str(UNITS))
    assert code == 0
    assert "pack zhengzhou" in out and "interpretation_3wd" in out
    code, _, err = cli(capsys, "rules", "show", "no_such_rule")
    assert code == 2
    assert "no_such_rule" in err


# -- schemas, bench ---------------------------------------------------------------------------


def test_committed_json_schemas_are_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "schemas")
    assert code == 0, err
    assert "stale" not in err


BENCH_NUMBERS = (
    "events_per_second",
    "open_obligations",
    "peak_rss_bytes",
    "bytes_per_open_obligation",
    "sweep_seconds_per_tick_1k",
    "sweep_seconds_per_tick_large",
    "sweep_ratio_large_to_1k",
)


def test_bench_report_shape(capsys: pytest.CaptureFixture[str]) -> None:
    """A smoke test of the report's shape on a tiny run: no timing is asserted."""
    code, out, err = cli(capsys, "bench", "--events", "3000", "--open", "3000")
    assert code == 0, err
    result = json.loads(out)
    for key in BENCH_NUMBERS:
        value = result[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), key
        assert value > 0, key
    assert result["open_obligations"] >= 3000


# -- help, make run / make test ----------------------------------------------------------------


def test_help_lists_the_subcommands(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for name in SUBCOMMANDS:
        assert re.search(rf"^\s+{name}\s", out, re.MULTILINE), name


def test_no_subcommand_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([])
    assert exc.value.code == 2
    assert "usage:" in capsys.readouterr().err


def test_readme_names_make_run_and_make_test() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert "make run" in readme
    assert "make test" in readme


def test_ci_runs_make_test() -> None:
    script = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    commands = [ln.strip() for ln in script.splitlines() if not ln.lstrip().startswith("#")]
    assert "make test" in commands


def test_makefile_run_and_test_targets() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    run = re.search(r"^run:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    test = re.search(r"^test:.*\n((?:\t.*\n)+)", makefile, re.MULTILINE)
    assert run and "govclock run" in run.group(1)
    assert test and "pytest" in test.group(1)
