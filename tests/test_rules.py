"""Rule packs: the operator's guide is true, malformed packs are refused with the file, the rule
and the field, the bundled packs hold the rules of rules.md, and the ``rules`` commands show
them with their sources.

The guide is docs/rule-packs.md; its worked example is also on disk in examples/local-packs/.
"""

from __future__ import annotations

import copy
import re
import shlex
from dataclasses import FrozenInstanceError
from datetime import date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from config.packs import load_rulebook
from config.tables import STATUS_MARK
from deadlines.calendar import WorkCalendar, day_of
from deadlines.ledger import Ledger
from deadlines.replay import replay
from deadlines.rules import RuleBook, RulePackError
from deadlines.timeparse import parse_as_of
from govclock.cli import main
from govclock.history import read_history
from schemas.events import parse_event

ROOT = Path(__file__).resolve().parent.parent
DOC = ROOT / "docs" / "rule-packs.md"
EXAMPLE = ROOT / "examples" / "local-packs"
EXAMPLE_PACKS = EXAMPLE / "packs"
CST = timezone(timedelta(hours=8))
CAL = WorkCalendar.official()
BOOK = load_rulebook()


def fenced_blocks(lang: str) -> list[str]:
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"^```{lang}\n(.*?)^```$", text, flags=re.M | re.S)


def block_id(text: str) -> str:
    first = text.strip().splitlines()[0]
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", first.lstrip("#- "))[:40]


def write(path: Path, content: str | object) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = content if isinstance(content, str) else yaml.safe_dump(content, allow_unicode=True)
    path.write_text(text, encoding="utf-8")
    return path


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- (a) the guide: every YAML block loads, the worked example is what it says ----------------

YAML_BLOCKS = fenced_blocks("yaml")


def test_the_guide_has_its_blocks() -> None:
    assert len(YAML_BLOCKS) >= 9
    assert sum(b.lstrip().startswith("# WRONG") for b in YAML_BLOCKS) == 2
    assert len(fenced_blocks("jsonl")) == 1


@pytest.mark.parametrize("text", YAML_BLOCKS, ids=[block_id(b) for b in YAML_BLOCKS])
def test_every_yaml_block_of_the_guide_loads(text: str, tmp_path: Path) -> None:
    """A pack, a units file, or rules (checked inside a pack extending ``default``); a block
    marked ``# WRONG`` must be refused."""
    data = yaml.safe_load(text)
    wrong = text.lstrip().startswith("# WRONG")
    units_file = None
    packs_dir = tmp_path / "packs"
    if isinstance(data, dict) and "pack" in data:
        write(packs_dir / f"{data['pack']}.yaml", text)
        expect_pack, expect_ids = data["pack"], {r["id"] for r in data.get("rules") or []}
    elif isinstance(data, dict) and "units" in data:
        packs_dir = EXAMPLE_PACKS
        units_file = write(tmp_path / "units.yaml", text)
        expect_pack, expect_ids = None, set()
    elif isinstance(data, list) and all(isinstance(r, dict) and "id" in r for r in data):
        wrapped = "pack: doc-fragment\ntitle: guide fragment\nextends: default\nrules:\n"
        wrapped += "".join(f"  {line}\n" for line in text.splitlines())
        write(packs_dir / "doc-fragment.yaml", wrapped)
        expect_pack, expect_ids = "doc-fragment", {r["id"] for r in data}
    else:
        pytest.fail(f"a YAML block of the guide is neither a pack, a units file nor rules:\n{text}")
    if wrong:
        with pytest.raises(RulePackError):
            load_rulebook(packs_dir=packs_dir, units_file=units_file)
        return
    book = load_rulebook(packs_dir=packs_dir, units_file=units_file)
    if expect_pack is not None:
        assert expect_ids <= set(book.packs[expect_pack].rule_ids())
    for unit in (data or {}).get("units", []) if isinstance(data, dict) else []:
        assert book.pack_for(unit["id"]).id == unit.get("pack", data.get("default_pack", "default"))


def test_worked_example_in_the_guide_is_the_one_on_disk() -> None:
    pack = [b for b in YAML_BLOCKS if "\npack: shanghai-pudong\n" in b]
    units = [b for b in YAML_BLOCKS if "shanghai-pudong" in b and "\nunits:\n" in b]
    assert pack == [(EXAMPLE_PACKS / "shanghai-pudong.yaml").read_text(encoding="utf-8")]
    assert units == [(EXAMPLE / "units.yaml").read_text(encoding="utf-8")]
    assert fenced_blocks("jsonl") == [(EXAMPLE / "history.jsonl").read_text(encoding="utf-8")]
    assert len((EXAMPLE / "history.jsonl").read_text(encoding="utf-8").splitlines()) == 5


def console(command: str) -> tuple[list[str], list[str]]:
    """The argv and printed lines of the guide's console block that runs ``command``."""
    for block in fenced_blocks("console"):
        first, *rest = block.splitlines()
        if first.startswith(f"$ govclock {command}") and rest:
            return shlex.split(first)[2:], rest
    raise AssertionError(f"no console block runs govclock {command}")


def obligation_rows(lines: list[str]) -> list[tuple[str, ...]]:
    """(status, rule, subject, due) of each obligation row of a replay table."""
    rows: list[tuple[str, ...]] = []
    inside = False
    for line in lines:
        if line.startswith("status "):
            inside = True
            continue
        if inside and not line.strip():
            break
        if inside and not line.startswith("-"):
            cells = re.split(r"\s{2,}", line.strip())
            rows.append((cells[0], cells[1], cells[2], cells[5]))
    return rows


def test_worked_example_replays_to_the_table_in_the_guide(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    argv, printed = console("replay")
    claimed = obligation_rows(printed)
    assert [(r[0], r[1]) for r in claimed] == [
        ("met", "double_publicity_7wd"),
        ("LATE", "penalty_publicity_5wd"),
        ("MISSED", "double_publicity_7wd"),
        ("LATE", "rumor_rebuttal"),
    ]
    monkeypatch.chdir(ROOT)  # the guide's paths are relative to the repository
    code, out, err = cli(capsys, *argv)
    assert (code, err) == (0, "")
    assert obligation_rows(out.splitlines()) == claimed
    tail = [line for line in printed if line.startswith(("overall", "events:"))]
    assert all(line in out.splitlines() for line in tail)


def example_statuses(units: bool) -> dict[tuple[str, str], str]:
    book = load_rulebook(
        packs_dir=EXAMPLE_PACKS, units_file=EXAMPLE / "units.yaml" if units else None
    )
    events, rejected = read_history(EXAMPLE / "history.jsonl")
    assert rejected == []
    result = replay(Ledger(book, CAL), events, parse_as_of("2026-03-13", 0))
    return {(ob.rule.id, ob.subject_id): ob.status for ob in result.ledger.obligations()}


def test_worked_example_statuses_through_the_core() -> None:
    claimed = {(r[1], r[2]): r[0] for r in obligation_rows(console("replay")[1])}
    got = example_statuses(units=True)
    assert {k: STATUS_MARK[v] for k, v in got.items()} == claimed
    assert got[("rumor_rebuttal", "YQ-2026-0042")] == "late"


def test_worked_example_without_the_units_file_is_plain_default() -> None:
    """What the guide says: every unit on ``default``, so 24 h for the rumour and no 5 WD rule."""
    got = example_statuses(units=False)
    assert got[("rumor_rebuttal", "YQ-2026-0042")] == "met"
    assert not any(rule == "penalty_publicity_5wd" for rule, _ in got)


def test_worked_example_rule_show_matches_the_guide(capsys: pytest.CaptureFixture[str]) -> None:
    argv, printed = console("rules show penalty_publicity_5wd")
    code, out, _ = cli(capsys, *argv[:-1], str(EXAMPLE_PACKS))
    assert code == 0
    assert out.strip().splitlines() == printed


def test_example_pack_changes_only_what_it_says() -> None:
    book = load_rulebook(packs_dir=EXAMPLE_PACKS, units_file=EXAMPLE / "units.yaml")
    pudong, default = book.packs["shanghai-pudong"], book.packs["default"]
    assert set(pudong.rule_ids()) == set(default.rule_ids()) | {"penalty_publicity_5wd"}
    assert [r.window.hours for r in pudong.versions("rumor_rebuttal")] == [12]
    assert [r.window.hours for r in default.versions("rumor_rebuttal")] == [24]
    assert book.pack_for("pd-gov").id == "shanghai-pudong"
    assert book.unit_kind("pd-gov") == "county_government"
    assert book.pack_for("not-listed").id == "default"
    assert book.unit_kind("not-listed") == "department"


# -- (b) malformed packs: the message names the file, the rule and the field ------------------

RULE: dict[str, Any] = {
    "id": "my_rule",
    "title": "My rule",
    "citations": [{"source": "EXAMPLE"}],
    "effective": {"from": "2020-01-01"},
    "trigger": {"events": ["decision.made"]},
    "evidence": {"kinds": ["decision_publicity"], "ref": "decision_id"},
    "window": {"working_days": 5},
}
APPLICATION = {
    "trigger": {"events": ["application.received"]},
    "evidence": {"kinds": ["reply"], "ref": "application_id"},
}
YEARLY = {
    "trigger": {"calendar": "yearly"},
    "evidence": {"kinds": ["annual_report"], "ref": "unit"},
}
HERE = "rule 'my_rule' (rules[0])"


def rule(**changes: Any) -> dict[str, Any]:
    """The valid rule above with fields replaced (``None`` deletes one)."""
    out = copy.deepcopy(RULE)
    for key, value in changes.items():
        if value is None:
            out.pop(key)
        else:
            out[key] = value
    return out


def pack(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"pack": "local", "title": "Local", "extends": "default", "rules": list(rules), **top}


def when(conditions: dict[str, Any], events: str = "decision.made") -> dict[str, Any]:
    return {"events": [events], "when": {"all": conditions}}


# id -> (pack document (dict) or raw text, location that must be named, field, what)
BAD_PACKS: dict[str, tuple[object, str, str, str]] = {
    "two window units": (
        pack(rule(window={"hours": 5, "working_days": 3})),
        HERE,
        "window",
        "give exactly one of hours, working_days, same_day, fixed_date (got hours, working_days)",
    ),
    "no window": (pack(rule(window=None)), HERE, "window", "Field required"),
    "empty window": (pack(rule(window={})), HERE, "window", "give exactly one"),
    "negative hours": (
        pack(rule(window={"hours": -5})),
        HERE,
        "window.hours",
        "greater than 0",
    ),
    "fractional working days": (
        pack(rule(window={"working_days": 2.5})),
        HERE,
        "window.working_days",
        "integer",
    ),
    "unknown event type": (
        pack(rule(trigger={"events": ["decision.created"]})),
        HERE,
        "trigger.events[0]",
        "'decision.made'",
    ),
    "neither events nor calendar": (
        pack(rule(trigger={"events": []})),
        HERE,
        "trigger",
        "give either events or calendar: yearly",
    ),
    "unknown publication kind": (
        pack(
            rule(evidence={"kinds": ["decision_publicity", "penalty_notice"], "ref": "decision_id"})
        ),
        HERE,
        "evidence.kinds[1]",
        "'decision_publicity'",
    ),
    "evidence.ref not a ref field": (
        pack(rule(evidence={"kinds": ["decision_publicity"], "ref": "decision"})),
        HERE,
        "evidence.ref",
        "'decision_id'",
    ),
    "evidence.ref the trigger does not carry": (
        pack(rule(evidence={"kinds": ["reply"], "ref": "application_id"})),
        HERE,
        "evidence.link",
        "decision.made has no field 'application_id'",
    ),
    "evidence.link to another id": (
        pack(
            rule(
                trigger={"events": ["document.published"]},
                evidence={
                    "kinds": ["interpretation"],
                    "ref": "document_id",
                    "link": "refs.incident_id",
                },
            )
        ),
        HERE,
        "evidence.link",
        "give 'document_id' or 'refs.document_id'",
    ),
    "when path not on the trigger event": (
        pack(rule(trigger=when({"severity": {"in": ["I", "II"]}}))),
        HERE,
        "trigger.when",
        "decision.made has no field 'severity'",
    ),
    "when path on one of two events only": (
        pack(
            rule(
                trigger={
                    "events": ["opinion.detected", "document.published"],
                    "when": {"all": {"topic": {"eq": "rumor"}}},
                },
                evidence={"kinds": ["response"], "ref": "incident_id", "link": "refs.incident_id"},
                window={"hours": 5},
            )
        ),
        HERE,
        "trigger.when",
        "document.published has no field 'topic'",
    ),
    "when value never taken": (
        pack(rule(trigger=when({"kind": {"eq": "penalties"}}))),
        HERE,
        "trigger.when",
        "'penalties' is never a value of decision.made kind (values: 'licensing', 'penalty')",
    ),
    "severity as numbers": (
        pack(
            rule(
                trigger=when({"severity": {"in": [1, 2]}}, "incident.reported"),
                evidence={"kinds": ["press_release"], "ref": "incident_id"},
                window={"hours": 5},
            )
        ),
        HERE,
        "trigger.when",
        "1 is never a value of incident.reported severity",
    ),
    "YAML boolean as a value": (
        "pack: local\ntitle: L\nrules:\n  - id: my_rule\n    title: T\n"
        "    citations: [{source: X}]\n    effective: {from: 2020-01-01}\n"
        "    trigger: {events: [decision.made], when: {all: {kind: {eq: no}}}}\n"
        "    evidence: {kinds: [decision_publicity], ref: decision_id}\n"
        "    window: {working_days: 5}\n",
        HERE,
        "trigger.when.all.kind.eq",
        "False is a YAML boolean",
    ),
    "YAML boolean as a key": (
        "pack: local\ntitle: L\nrules:\n  - id: my_rule\n    title: T\n"
        "    citations: [{source: X}]\n    effective: {from: 2020-01-01}\n"
        "    trigger: {on: [decision.made]}\n"
        "    evidence: {kinds: [decision_publicity], ref: decision_id}\n"
        "    window: {working_days: 5}\n",
        HERE,
        "trigger",
        "a key reads as the YAML boolean True",
    ),
    "empty predicate": (
        pack(rule(trigger=when({"kind": {}}))),
        HERE,
        "trigger.when.all.kind",
        "a predicate needs one of eq, ne, in, gte, lte, present",
    ),
    "present with another test": (
        pack(rule(trigger=when({"kind": {"present": True, "eq": "penalty"}}))),
        HERE,
        "trigger.when.all.kind",
        "present cannot be combined",
    ),
    "incident fact that does not exist": (
        pack(
            rule(
                trigger=when({"incident.sevrity": {"eq": "I"}}, "opinion.detected"),
                evidence={"kinds": ["response"], "ref": "incident_id", "link": "refs.incident_id"},
                window={"hours": 5},
            )
        ),
        HERE,
        "trigger.when",
        "'incident.sevrity': incidents have no such field",
    ),
    "incident facts on a rule not on the incident": (
        pack(
            rule(
                trigger=when({"incident.severity": {"eq": "I"}}, "opinion.detected"),
                evidence={"kinds": ["response"], "ref": "opinion_id"},
                window={"hours": 48},
            )
        ),
        HERE,
        "trigger.when",
        "evidence.ref: incident_id",
    ),
    "start that is not a time": (
        pack(rule(trigger={"events": ["decision.made"], "start": "kind"})),
        HERE,
        "trigger.start",
        "'kind' is not a time; decision.made's time is 'decided_at'",
    ),
    "start that does not exist": (
        pack(rule(trigger={"events": ["decision.made"], "start": "published_at"})),
        HERE,
        "trigger.start",
        "decision.made has no field 'published_at'",
    ),
    "trigger.id that does not exist": (
        pack(rule(trigger={"events": ["decision.made"], "id": "case_no"})),
        HERE,
        "trigger.id",
        "decision.made has no field 'case_no'",
    ),
    "last_day_at on an hour window": (
        pack(rule(window={"hours": 12}, warnings=[{"last_day_at": "09:00"}])),
        HERE,
        "warnings[0].last_day_at",
        "needs a day window",
    ),
    "last_day_at unquoted": (
        pack(rule(warnings=[{"last_day_at": 1050}])),
        HERE,
        "warnings[0].last_day_at",
        'write last_day_at: "17:30"',
    ),
    "last_day_at not HH:MM": (
        pack(rule(warnings=[{"last_day_at": "9am"}])),
        HERE,
        "warnings[0]",
        "last_day_at is HH:MM, got '9am'",
    ),
    "warning with two points": (
        pack(rule(warnings=[{"fraction": 0.5, "before_hours": 1}])),
        HERE,
        "warnings[0]",
        "give exactly one of fraction, before_hours, last_day_at",
    ),
    "warning fraction of 1": (
        pack(rule(warnings=[{"fraction": 1}])),
        HERE,
        "warnings[0].fraction",
        "less than 1",
    ),
    "clock event that cannot carry the ref": (
        pack(rule(clock=[{"event": "application.extended", "do": "extend"}])),
        HERE,
        "clock[0].event",
        "application.extended does not carry 'decision_id'",
    ),
    "extend on an event without working_days": (
        pack(rule(**APPLICATION, clock=[{"event": "application.corrected", "do": "extend"}])),
        HERE,
        "clock[0]",
        "extend needs an event with working_days",
    ),
    "clock event twice": (
        pack(
            rule(
                **APPLICATION,
                clock=[
                    {"event": "application.corrected", "do": "restart"},
                    {"event": "application.corrected", "do": "pause"},
                ],
            )
        ),
        HERE,
        "clock[1].event",
        "application.corrected already has a step (clock[0])",
    ),
    "unknown clock action": (
        pack(rule(**APPLICATION, clock=[{"event": "application.corrected", "do": "stop"}])),
        HERE,
        "clock[0].do",
        "'pause'",
    ),
    "overlapping versions of one id": (
        pack(rule(), rule(effective={"from": "2021-01-01"})),
        "rule 'my_rule' (rules[0] and rules[1])",
        "effective",
        "versions from 2020-01-01 and 2021-01-01 overlap",
    ),
    "until before from": (
        pack(rule(effective={"from": "2020-01-01", "until": "2019-12-31"})),
        HERE,
        "effective",
        "until 2019-12-31 is before from 2020-01-01",
    ),
    "not a date": (
        pack(rule(effective={"from": "2020-13-01"})),
        HERE,
        "effective.from",
        "date",
    ),
    "bad MM-DD": (
        pack(rule(**YEARLY, window={"fixed_date": "1-31"})),
        HERE,
        "window",
        "fixed dates are MM-DD, got '1-31'",
    ),
    "MM-DD that is not a day": (
        pack(rule(**YEARLY, window={"fixed_date": "02-30"})),
        HERE,
        "window",
        "fixed date '02-30' is not a day of every year",
    ),
    "MM-DD only in leap years": (
        pack(
            rule(**YEARLY, window={"fixed_date": "01-31", "by_unit_kind": {"government": "02-29"}})
        ),
        HERE,
        "window",
        "fixed date '02-29' is not a day of every year",
    ),
    "by_unit_kind with an unknown kind": (
        pack(rule(**YEARLY, window={"fixed_date": "01-31", "by_unit_kind": {"district": "02-20"}})),
        HERE,
        "window.by_unit_kind.district",
        "'department'",
    ),
    "fixed_date on an event rule": (
        pack(rule(window={"fixed_date": "01-31"})),
        HERE,
        "window.fixed_date",
        "only works with trigger.calendar",
    ),
    "calendar rule with an hour window": (
        pack(rule(**YEARLY, window={"hours": 5})),
        HERE,
        "window",
        "a calendar trigger needs a fixed_date window",
    ),
    "ref unit on an event rule": (
        pack(rule(evidence={"kinds": ["decision_publicity"], "ref": "unit"})),
        HERE,
        "evidence.ref",
        "'unit' goes with trigger.calendar: yearly",
    ),
    "unknown key (typo widow)": (
        pack(rule(window=None) | {"widow": {"working_days": 5}}),
        HERE,
        "widow",
        "unknown key (misspelt?)",
    ),
    "missing citations": (
        pack(rule(citations=None)),
        HERE,
        "citations",
        "Field required",
    ),
    "empty citations": (pack(rule(citations=[])), HERE, "citations", "at least 1 item"),
    "citation without source": (
        pack(rule(citations=[{"section": "第二十六条"}])),
        HERE,
        "citations[0].source",
        "Field required",
    ),
    "rule without id": (pack(rule(id=None)), "rules[0]", "id", "Field required"),
    "rule id with capitals": (
        pack(rule(id="My-Rule")),
        "rule 'My-Rule' (rules[0])",
        "id",
        "pattern",
    ),
    "second rule broken": (
        pack(rule(), rule(id="other", title=None)),
        "rule 'other' (rules[1])",
        "title",
        "Field required",
    ),
    "YAML syntax error": (
        "pack: local\ntitle: L\nrules:\n  - id: my_rule\n    title: [unclosed\n",
        "not valid YAML",
        "line 5, column 12",
        "expected ',' or ']'",
    ),
    "tab indentation": (
        "pack: local\ntitle: L\nrules:\n\t- id: my_rule\n",
        "not valid YAML",
        "line 4, column 1",
        "",
    ),
    "not a mapping": ("- just\n- a list\n", "(pack)", "", "valid dictionary"),
    "pack without title": ({"pack": "local"}, "title", "", "Field required"),
    "pack id with capitals": ({"pack": "Local", "title": "L"}, "pack", "", "pattern"),
    "unknown top-level key": (pack(rule()) | {"extend": "default"}, "extend", "", "unknown key"),
    "extends an unknown pack": (
        pack(rule(), extends="shanghai"),
        "extends",
        "",
        "no pack named 'shanghai'",
    ),
    "remove an id the parent lacks": (
        pack(rule(), remove=["rumour_rebuttal"]),
        "remove",
        "",
        "rumour_rebuttal not in parent pack 'default'",
    ),
    "remove without extends": (
        {"pack": "local", "title": "L", "remove": ["rumor_rebuttal"]},
        "",
        "remove",
        "needs extends",
    ),
}


@pytest.mark.parametrize(("doc", "where", "field", "what"), BAD_PACKS.values(), ids=list(BAD_PACKS))
def test_malformed_pack_names_file_rule_and_field(
    tmp_path: Path, doc: object, where: str, field: str, what: str
) -> None:
    path = write(tmp_path / "packs" / "local.yaml", doc)
    with pytest.raises(RulePackError) as caught:
        load_rulebook(packs_dir=tmp_path / "packs")
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message  # the file, first
    # One line names the rule (or the place), the field and the problem, in that order; a YAML
    # error takes several lines (the file, the line and column, what was expected).
    haystack = [message] if where == "not valid YAML" else message.splitlines()
    pattern = ".*".join(re.escape(s) for s in (where, field, what) if s)
    assert any(re.search(pattern, h, flags=re.S) for h in haystack), message


def test_extends_cycle_names_the_file_and_the_chain(tmp_path: Path) -> None:
    write(tmp_path / "a.yaml", {"pack": "a", "title": "A", "extends": "b"})
    write(tmp_path / "b.yaml", {"pack": "b", "title": "B", "extends": "a"})
    with pytest.raises(RulePackError, match=r"/a\.yaml: extends cycle: a -> b -> a$"):
        load_rulebook(packs_dir=tmp_path)


def test_a_pack_cannot_extend_its_own_name(tmp_path: Path) -> None:
    """A local ``default`` replaces the bundled one, so it cannot also extend it."""
    write(tmp_path / "default.yaml", {"pack": "default", "title": "mine", "extends": "default"})
    with pytest.raises(RulePackError, match=r"default\.yaml: extends cycle: default -> default"):
        load_rulebook(packs_dir=tmp_path)


# units file -> (content, location, field, what)
BAD_UNITS: dict[str, tuple[object, str, str, str]] = {
    "unknown pack": (
        {"units": [{"id": "pd-scjg", "pack": "shanghai_pudong"}]},
        "units[0] (pd-scjg)",
        "pack",
        "'shanghai_pudong' is not loaded (have: default, national, shanghai-pudong, zhengzhou)",
    ),
    "bad kind": (
        {"units": [{"id": "pd-scjg", "kind": "district"}]},
        "units[0] (pd-scjg)",
        "kind",
        "'district' not in ('department', 'government', 'county_government')",
    ),
    "duplicate unit": (
        {"units": [{"id": "pd-scjg"}, {"id": "pd-gov"}, {"id": "pd-scjg", "pack": "national"}]},
        "units[2] (pd-scjg)",
        "id",
        "duplicate unit 'pd-scjg'",
    ),
    "unknown default pack": (
        {"default_pack": "shanghai", "units": []},
        "default_pack",
        "",
        "'shanghai' is not loaded",
    ),
    "unknown unit key": (
        {"units": [{"id": "pd-scjg", "pakc": "national"}]},
        "units[0] (pd-scjg)",
        "",
        "unknown keys ['pakc']",
    ),
    "unit without id": ({"units": [{"pack": "national"}]}, "units[0]", "", "needs an 'id'"),
    "unknown top-level key": ({"unit": []}, "", "", "unknown keys ['unit']"),
    "YAML syntax error": ("units:\n  - {id: a\n", "not valid YAML", "line 3", ""),
}


@pytest.mark.parametrize(("doc", "where", "field", "what"), BAD_UNITS.values(), ids=list(BAD_UNITS))
def test_malformed_units_file_names_file_unit_and_field(
    tmp_path: Path, doc: object, where: str, field: str, what: str
) -> None:
    path = write(tmp_path / "units.yaml", doc)
    with pytest.raises(RulePackError) as caught:
        load_rulebook(packs_dir=EXAMPLE_PACKS, units_file=path)
    message = str(caught.value)
    assert message.startswith(f"{path}:"), message
    pattern = ".*".join(re.escape(s) for s in (where, field, what) if s)
    assert re.search(pattern, message, flags=re.S), message


def test_units_file_inside_the_packs_directory_is_read_as_a_pack(tmp_path: Path) -> None:
    write(tmp_path / "packs" / "units.yaml", {"default_pack": "default", "units": []})
    with pytest.raises(RulePackError, match=r"units\.yaml: pack: Field required"):
        load_rulebook(packs_dir=tmp_path / "packs")


def test_listed_unit_without_pack_uses_default_pack(tmp_path: Path) -> None:
    path = write(tmp_path / "units.yaml", {"default_pack": "national", "units": [{"id": "u1"}]})
    book = load_rulebook(units_file=path)
    assert book.pack_for("u1").id == "national"
    assert book.pack_for("unlisted").id == "national"


def test_packs_dir_and_units_file_from_the_environment(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("GOVCLOCK_PACKS_DIR", str(EXAMPLE_PACKS))
    monkeypatch.setenv("GOVCLOCK_UNITS_FILE", str(EXAMPLE / "units.yaml"))
    book = load_rulebook()
    assert book.pack_for("pd-scjg").id == "shanghai-pudong"
    code, out, _ = cli(capsys, "rules", "show", "penalty_publicity_5wd")
    assert code == 0 and "[shanghai-pudong/penalty_publicity_5wd@2026-01-01]" in out


def test_yml_files_are_not_read(tmp_path: Path) -> None:
    write(tmp_path / "local.yml", pack(rule()))
    assert "local" not in load_rulebook(packs_dir=tmp_path).packs


def test_a_later_file_with_the_same_pack_id_replaces_the_pack(tmp_path: Path) -> None:
    """A local ``national`` replaces the bundled one, and so changes the packs extending it
    (whose ``remove`` lists must still name rules of the new one)."""
    rules = [rule(id=i) for i in ("my_rule", "online_posting_20wd", "interpretation_same_day")]
    write(tmp_path / "national.yaml", {"pack": "national", "title": "N", "rules": rules[:1]})
    with pytest.raises(RulePackError, match=r"default\.yaml: remove: online_posting_20wd not in"):
        load_rulebook(packs_dir=tmp_path)
    write(tmp_path / "national.yaml", {"pack": "national", "title": "N", "rules": rules})
    book = load_rulebook(packs_dir=tmp_path)
    assert book.packs["national"].rule_ids() == sorted(r["id"] for r in rules)
    assert book.packs["default"].rule_ids()[0] == "annual_report"
    assert "my_rule" in book.packs["zhengzhou"].rule_ids()
    assert "first_release_5h" not in book.packs["zhengzhou"].rule_ids()


# -- (c) the bundled packs ------------------------------------------------------------------

REQUIRED_IN_DEFAULT = (
    "first_release_5h",
    "press_conference_24h",
    "online_posting_10wd",
    "power_list_10wd",
    "double_publicity_7wd",
    "interpretation_same_day",
    "application_reply_20wd",
    "opinion_response_48h",
    "opinion_major_5h",
    "opinion_major_24h",
    "rumor_rebuttal",
    "annual_report",
)


def test_bundled_packs() -> None:
    assert set(BOOK.packs) == {"national", "default", "zhengzhou"}
    assert BOOK.default_pack == "default"


@pytest.mark.parametrize("rule_id", REQUIRED_IN_DEFAULT)
def test_default_pack_has_every_rule_of_the_brief(rule_id: str) -> None:
    assert BOOK.packs["default"].versions(rule_id)


@pytest.mark.parametrize("pack_id", ["national", "default", "zhengzhou"])
def test_every_bundled_rule_cites_a_source(pack_id: str) -> None:
    for r in BOOK.packs[pack_id].rules:
        assert r.spec.citations, r.key
        assert all(c.source.strip() for c in r.spec.citations), r.key
        assert r.title.strip()


def test_national_posts_in_20_working_days_not_10() -> None:
    national = BOOK.packs["national"].rule_ids()
    assert "online_posting_20wd" in national and "online_posting_10wd" not in national
    assert [
        r.window.working_days for r in BOOK.packs["national"].versions("online_posting_20wd")
    ] == [20]
    default = BOOK.packs["default"].rule_ids()
    assert "online_posting_10wd" in default and "online_posting_20wd" not in default


def test_zhengzhou_interprets_in_3_working_days_not_the_same_day() -> None:
    zz = BOOK.packs["zhengzhou"]
    assert "interpretation_3wd" in zz.rule_ids()
    assert "interpretation_same_day" not in zz.rule_ids()
    assert [r.window.working_days for r in zz.versions("interpretation_3wd")] == [3]


@pytest.mark.parametrize("pack_id", ["national", "default", "zhengzhou"])
def test_application_reply_has_the_2019_boundary(pack_id: str) -> None:
    old, new = BOOK.packs[pack_id].versions("application_reply_20wd")
    assert (old.spec.effective.from_, old.spec.effective.until) == (
        date(2008, 5, 1),
        date(2019, 5, 14),
    )
    assert (new.spec.effective.from_, new.spec.effective.until) == (date(2019, 5, 15), None)
    assert (old.window.working_days, new.window.working_days) == (15, 20)
    assert old.clock["application.extended"].max_working_days == 15
    assert new.clock["application.extended"].max_working_days == 20


def received(application_id: str, day: str) -> Any:
    return parse_event(
        {
            "event_id": f"recv-{application_id}",
            "type": "application.received",
            "unit": "sh-gov",
            "application_id": application_id,
            "received_at": day,
        }
    )


@pytest.mark.parametrize(
    ("day", "working_days", "version", "due"),
    [
        ("2019-05-10", 15, "2008-05-01", date(2019, 5, 31)),
        ("2019-05-14", 15, "2008-05-01", date(2019, 6, 4)),
        ("2019-05-15", 20, "2019-05-15", date(2019, 6, 13)),
        ("2019-05-20", 20, "2019-05-15", date(2019, 6, 18)),  # Dragon Boat Festival 7 June
    ],
)
def test_application_gets_the_window_of_its_receipt_day(
    day: str, working_days: int, version: str, due: date
) -> None:
    ledger = Ledger(BOOK, CAL)
    ledger.apply(received("A-1", day))
    (ob,) = ledger.obligations()
    assert ob.rule.id == "application_reply_20wd"
    assert ob.rule.key == f"default/application_reply_20wd@{version}"
    assert date.fromordinal(day_of(ob.due_at)) == due
    counted, assumed = CAL.working_days_between(date.fromisoformat(day), due)
    assert (counted, assumed) == (working_days, False)


def test_an_obligation_keeps_the_version_it_was_opened_under() -> None:
    """Received under the 2007 regulation: a 20-day extension asked after 2019-05-15 is still
    judged by the 2007 text (at most 15), and the 15-day one is allowed."""
    ledger = Ledger(BOOK, CAL)
    ledger.apply(received("A-2", "2019-05-10"))

    def extended(eid: str, n: int) -> Any:
        return parse_event(
            {
                "event_id": eid,
                "type": "application.extended",
                "unit": "sh-gov",
                "application_id": "A-2",
                "at": "2019-05-27",
                "working_days": n,
            }
        )

    (fx,) = ledger.apply(extended("ext-20", 20))
    assert (fx.kind, fx.detail) == ("rejected", "at most 15 working days")
    (fx,) = ledger.apply(extended("ext-15", 15))
    assert fx.kind == "extended"
    (ob,) = ledger.obligations()
    assert ob.rule.key == "default/application_reply_20wd@2008-05-01"
    assert CAL.working_days_between(date(2019, 5, 10), date.fromordinal(day_of(ob.due_at)))[0] == 30


def test_compiled_rules_cannot_change() -> None:
    (r,) = BOOK.packs["default"].versions("first_release_5h")
    with pytest.raises(FrozenInstanceError):
        r.version = "2020-01-01"  # type: ignore[misc]
    with pytest.raises(ValidationError):
        r.spec.window.hours = 24  # type: ignore[misc]


@pytest.mark.parametrize(
    ("kind", "due"),
    [("department", "01-31"), ("county_government", "02-20"), ("government", "03-31")],
)
def test_units_file_kind_selects_the_annual_report_date(
    units_book: Any, kind: str, due: str
) -> None:
    book: RuleBook = units_book([{"id": "u1", "pack": "default", "kind": kind}])
    ledger = Ledger(book, CAL)
    ledger.tick(int(datetime(2026, 1, 1, 0, 0, 1, tzinfo=CST).timestamp()))
    (ob,) = ledger.obligations()
    assert (ob.rule.id, ob.subject_id) == ("annual_report", "u1/2025")
    assert date.fromordinal(day_of(ob.due_at)) == date.fromisoformat(f"2026-{due}")


# -- (d) the rules commands -------------------------------------------------------------------


def test_rules_list_prints_every_pack_and_first_sources(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "rules", "list")
    assert (code, err) == (0, "")
    for pack_id in ("default", "national", "zhengzhou"):
        assert f"pack {pack_id}" in out
    assert "pack default (default):" in out
    line = next(x for x in out.splitlines() if x.startswith("first_release_5h "))
    assert "5 h" in line
    assert BOOK.packs["default"].versions("first_release_5h")[0].spec.citations[0].source in line


def test_rules_show_prints_the_rule_with_its_citations(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "rules", "show", "first_release_5h", "--pack", "default")
    assert (code, err) == (0, "")
    assert out.startswith("first_release_5h  [default/first_release_5h@2016-08-12]")
    (r,) = BOOK.packs["default"].versions("first_release_5h")
    assert r.title in out
    for citation in r.spec.citations:
        assert citation.source in out
        if citation.quote:
            assert citation.quote.strip() in out
    assert "最迟应在5小时内发布权威信息" in out
    assert "window: 5 h" in out


def test_rules_show_without_pack_shows_every_pack(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = cli(capsys, "rules", "show", "first_release_5h")
    assert code == 0
    for pack_id in ("national", "default", "zhengzhou"):
        assert f"[{pack_id}/first_release_5h@2016-08-12]" in out


def test_rules_show_unknown_rule_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "rules", "show", "nope")
    assert (code, out) == (2, "")
    assert "no rule 'nope'" in err


def test_rules_show_local_rule_needs_the_packs_dir(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(capsys, "rules", "show", "penalty_publicity_5wd")[0] == 2
    code, out, _ = cli(
        capsys, "rules", "show", "penalty_publicity_5wd", "--packs", str(EXAMPLE_PACKS)
    )
    assert code == 0 and "EXAMPLE ONLY" in out


def test_rules_list_refuses_a_malformed_pack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "local.yaml", pack(rule(window={"hours": 5, "working_days": 3})))
    code, out, err = cli(capsys, "rules", "list", "--packs", str(tmp_path))
    assert (code, out) == (2, "")
    assert err.startswith(f"govclock: {path}: {HERE}: window: give exactly one")
