"""The on-call roster: rotations across handoffs, overrides, the emergency office, gaps, phone
masking, and malformed rosters rejected with messages that name the file, unit, level and field.

Expected people are worked out by hand from the roster below (2026-03-02 and 2026-03-09 are
Mondays), never from the code under test.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry

from config.escalation_files import load_roster
from deadlines.roster import (
    EMERGENCY_OFFICE,
    Roster,
    RosterError,
    mask_phone,
    roster_from_document,
)
from metrics.collectors import Metrics
from tests.test_metrics import scrape

ROSTER_YAML = """
roster: 测试值班表
timezone: Asia/Shanghai
people:
  - {id: zhang, name: 张三, phone: "+8613800138000", channels: [sms, voice]}
  - {id: li, name: 李四, phone: "+8613900139000", channels: [sms, voice]}
  - {id: wang, name: 王五, phone: "+8613700137000"}
  - {id: zhao, name: 赵六, phone: "+8613600136000"}
  - {id: chen, name: 陈七, phone: "+8613500135000"}
  - {id: eo-a, name: 应急甲, phone: "+8613400134000"}
  - {id: eo-b, name: 应急乙, phone: "+8613300133000"}
units:
  u1:
    name: 某区应急管理局
    levels:
      1:
        rotation:
          people: [zhang, li]
          start: 2026-03-02            # a Monday: zhang from 09:00, li a week later
          handoff: {weekday: monday, time: "09:00"}
          period_days: 7
      2:
        rotation: {people: [wang, zhao], start: 2026-01-05, period_days: 14}
emergency_office:
  name: 区应急办
  levels:
    1:
      rotation: {people: [eo-a, eo-b], start: 2026-03-01, handoff: {time: "08:30"}, period_days: 1}
overrides:
  - {unit: u1, level: 1, person: chen, from: 2026-03-10T18:00, until: 2026-03-11T09:00,
     reason: 李四出差}
"""
DOC: dict[str, Any] = yaml.safe_load(ROSTER_YAML)


def ts(text: str) -> int:
    value = datetime.fromisoformat(text)
    assert value.tzinfo is not None, f"{text} has no offset"
    return int(value.timestamp())


def cst(local: str) -> int:
    return ts(f"{local}+08:00")


def roster(doc: dict[str, Any] | None = None) -> Roster:
    return roster_from_document(DOC if doc is None else doc, "roster.yaml")


def who(r: Roster, unit: str, level: int, at: int) -> list[str]:
    return [p.id for p in r.on_call(unit, level, at)]


def edited(**changes: Any) -> dict[str, Any]:
    """A deep copy of the roster document with top-level keys replaced."""
    doc: dict[str, Any] = yaml.safe_load(ROSTER_YAML)
    doc.update(changes)
    return doc


def rejected(doc: object) -> str:
    with pytest.raises(RosterError) as info:
        roster_from_document(doc, "roster.yaml")
    return str(info.value)


# --- rotations --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-03-02T08:59:59", []),  # the rotation has not started: nobody
        ("2026-03-02T09:00:00", ["zhang", "li"]),
        ("2026-03-09T08:59:59", ["zhang", "li"]),  # the last second of zhang's week
        ("2026-03-09T09:00:00", ["li", "zhang"]),  # handoff
        ("2026-03-16T09:00:00", ["zhang", "li"]),
        ("2026-12-28T09:00:00", ["li", "zhang"]),  # 43 weeks after the start: odd turn
    ],
)
def test_weekly_rotation_hands_off_at_the_boundary(local: str, expected: list[str]) -> None:
    assert who(roster(), "u1", 1, cst(local)) == expected


def test_fortnightly_rotation_counts_from_its_start() -> None:
    r = roster()
    # Starts Mon 2026-01-05 09:00 (default handoff time), 14 days a turn.
    assert who(r, "u1", 2, cst("2026-01-19T08:59:59")) == ["wang", "zhao"]
    assert who(r, "u1", 2, cst("2026-01-19T09:00:00")) == ["zhao", "wang"]
    assert who(r, "u1", 2, cst("2026-03-10T12:00:00")) == ["wang", "zhao"]  # turn 4


def test_daily_emergency_office_hands_off_at_0830() -> None:
    r = roster()
    assert who(r, EMERGENCY_OFFICE, 1, cst("2026-03-01T08:29:59")) == []
    assert who(r, EMERGENCY_OFFICE, 1, cst("2026-03-01T08:30:00")) == ["eo-a", "eo-b"]
    assert who(r, EMERGENCY_OFFICE, 1, cst("2026-03-02T08:29:59")) == ["eo-a", "eo-b"]
    assert who(r, EMERGENCY_OFFICE, 1, cst("2026-03-02T08:30:00")) == ["eo-b", "eo-a"]
    assert who(r, EMERGENCY_OFFICE, 1, cst("2026-03-10T15:00:01")) == ["eo-b", "eo-a"]


def test_people_carry_their_details() -> None:
    zhang = roster().on_call("u1", 1, cst("2026-03-02T10:00:00"))[0]
    assert (zhang.name, zhang.phone, zhang.channels) == ("张三", "+8613800138000", ("sms", "voice"))
    assert "+8613800138000" not in repr(zhang)
    assert str(zhang) == "张三 (zhang, +86138****8000)"
    wang = roster().on_call("u1", 2, cst("2026-03-02T10:00:00"))[0]
    assert wang.channels == ("sms",)  # the default


# --- overrides --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("local", "expected"),
    [
        ("2026-03-10T17:59:59", ["li", "zhang"]),
        ("2026-03-10T18:00:00", ["chen", "li", "zhang"]),  # the override wins, then the rotation
        ("2026-03-11T08:59:59", ["chen", "li", "zhang"]),
        ("2026-03-11T09:00:00", ["li", "zhang"]),  # until is exclusive
    ],
)
def test_override_wins_for_its_interval(local: str, expected: list[str]) -> None:
    assert who(roster(), "u1", 1, cst(local)) == expected


def test_override_of_a_person_already_in_the_rotation_is_not_listed_twice() -> None:
    doc = edited(
        overrides=[
            {
                "unit": "u1",
                "level": 1,
                "person": "zhang",
                "from": "2026-03-10T18:00",
                "until": "2026-03-11",
            }
        ]
    )
    assert who(roster(doc), "u1", 1, cst("2026-03-10T20:00:00")) == ["zhang", "li"]
    # A bare date means 00:00 Asia/Shanghai.
    assert who(roster(doc), "u1", 1, cst("2026-03-11T00:00:00")) == ["li", "zhang"]


def test_override_times_with_an_offset_are_the_same_instants() -> None:
    aware = edited(
        overrides=[
            {
                "unit": "u1",
                "level": 1,
                "person": "chen",
                "from": "2026-03-10T10:00:00Z",  # = 18:00 in Shanghai
                "until": datetime.fromisoformat("2026-03-11T09:00:00+08:00"),
            }
        ]
    )
    r = roster(aware)
    assert who(r, "u1", 1, cst("2026-03-10T17:59:59")) == ["li", "zhang"]
    assert who(r, "u1", 1, cst("2026-03-10T18:00:00")) == ["chen", "li", "zhang"]
    (mine,), (theirs,) = r.overrides[("u1", 1)], roster().overrides[("u1", 1)]
    assert (mine.start, mine.until) == (theirs.start, theirs.until)


def test_override_can_cover_a_level_whose_rotation_has_not_started() -> None:
    doc = edited(
        overrides=[
            {
                "unit": EMERGENCY_OFFICE,
                "person": "chen",
                "from": "2026-02-28T00:00",
                "until": "2026-03-01T08:30",
            }
        ]
    )
    assert who(roster(doc), EMERGENCY_OFFICE, 1, cst("2026-02-28T12:00:00")) == ["chen"]


# --- nobody on call ---------------------------------------------------------------------------


def test_nobody_on_call() -> None:
    r = roster()
    assert r.on_call("not-in-roster", 1, cst("2026-03-10T12:00:00")) == []
    assert r.on_call("u1", 3, cst("2026-03-10T12:00:00")) == []
    assert r.levels("u1") == 2 and r.levels("not-in-roster") == 0
    assert r.gaps(cst("2026-03-01T08:00:00")) == [(EMERGENCY_OFFICE, 1), ("u1", 1)]
    assert r.gaps(cst("2026-03-01T12:00:00")) == [("u1", 1)]
    assert r.gaps(cst("2026-03-10T12:00:00"), ["u1", "u9"]) == [("u9", 1)]


def test_the_roster_gap_gauge_follows_the_clock() -> None:
    r = roster()
    assert r.level_pairs() == [
        (EMERGENCY_OFFICE, lv) for lv in range(1, r.levels(EMERGENCY_OFFICE) + 1)
    ] + [
        ("u1", 1),
        ("u1", 2),
    ]
    registry = CollectorRegistry()
    metrics = Metrics(registry)
    gap = 'govclock_roster_gap{{level="{}",unit="{}"}}'
    for at, empty in (
        ("2026-03-01T08:00:00", {(EMERGENCY_OFFICE, 1), ("u1", 1)}),
        ("2026-03-01T12:00:00", {("u1", 1)}),
        ("2026-03-10T12:00:00", set()),
    ):
        metrics.set_roster_gaps(r.level_pairs(), r.gaps(cst(at)))
        got = scrape(registry)
        assert {k for k, v in got.items() if k.startswith("govclock_roster_gap") and v == 1} == {
            gap.format(lv, u) for u, lv in empty
        }, at
        assert sum(k.startswith("govclock_roster_gap") for k in got) == len(r.level_pairs())


# --- masking ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phone", "masked"),
    [
        ("+8613800138000", "+86138****8000"),
        ("+14155550123", "+141****0123"),
        ("+861012345678", "+8610****5678"),
        ("+1234567", "+1****67"),
        ("13800138000", "****"),  # not E.164: nothing shown
        ("", "****"),
    ],
)
def test_mask_phone(phone: str, masked: str) -> None:
    assert mask_phone(phone) == masked


# --- malformed rosters ------------------------------------------------------------------------


def _person(i: int, **fields: Any) -> dict[str, Any]:
    doc: dict[str, Any] = yaml.safe_load(ROSTER_YAML)
    return {**doc["people"][i], **fields}


def test_bad_phone_is_rejected_with_the_person_named() -> None:
    people = [_person(0), _person(1, phone="+86 139 0013 9000"), *DOC["people"][2:]]
    msg = rejected(edited(people=people))
    assert msg.startswith("roster.yaml: people[1] (li).phone: '+** *** **** 9000' is not an E.164")


def test_unquoted_phone_is_explained() -> None:
    doc = yaml.safe_load(ROSTER_YAML.replace('"+8613900139000"', "+8613900139000"))
    msg = rejected(doc)
    assert "people[1] (li).phone: got the number 8613900139000" in msg
    assert "quote it" in msg


def test_phone_without_country_code_is_rejected() -> None:
    people = [_person(0, phone="13800138000"), *DOC["people"][1:]]
    msg = rejected(edited(people=people))
    assert "people[0] (zhang).phone: '*******8000' is not an E.164 number" in msg


def test_unknown_person_in_rotation() -> None:
    doc = edited()
    doc["units"]["u1"]["levels"][1]["rotation"]["people"] = ["zhang", "liu"]
    assert rejected(doc) == (
        "roster.yaml: units.u1.levels.1.rotation.people[1]: unknown person 'liu' (not in people)"
    )


def test_overlapping_overrides() -> None:
    base = {"unit": "u1", "level": 1}
    doc = edited(
        overrides=[
            {**base, "person": "chen", "from": "2026-03-10T18:00", "until": "2026-03-11T09:00"},
            {**base, "person": "wang", "from": "2026-03-11T08:00", "until": "2026-03-11T12:00"},
            # another level may overlap
            {
                **base,
                "level": 2,
                "person": "wang",
                "from": "2026-03-10T18:00",
                "until": "2026-03-11",
            },
        ]
    )
    assert rejected(doc) == (
        "roster.yaml: overrides[1]: from: u1 level 1: 2026-03-11T08:00:00+08:00 overlaps "
        "overrides[0] (2026-03-10T18:00:00+08:00 to 2026-03-11T09:00:00+08:00); "
        "overrides of one unit and level must not overlap"
    )


def test_adjacent_overrides_do_not_overlap() -> None:
    base = {"unit": "u1", "level": 1}
    doc = edited(
        overrides=[
            {**base, "person": "wang", "from": "2026-03-11T09:00", "until": "2026-03-11T12:00"},
            {**base, "person": "chen", "from": "2026-03-10T18:00", "until": "2026-03-11T09:00"},
        ]
    )
    r = roster(doc)
    assert who(r, "u1", 1, cst("2026-03-11T08:59:59"))[0] == "chen"
    assert who(r, "u1", 1, cst("2026-03-11T09:00:00"))[0] == "wang"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        (
            {"unit": "u2", "person": "chen"},
            "roster.yaml: overrides[0]: unit: unknown unit 'u2' (roster has: emergency_office, u1)",
        ),
        (
            {"unit": "u1", "level": 3, "person": "chen"},
            "roster.yaml: overrides[0]: level: u1 has no level 3 (levels 1-2)",
        ),
        (
            {"unit": "u1", "person": "liu"},
            "roster.yaml: overrides[0]: person: unknown person 'liu' (not in people)",
        ),
    ],
)
def test_override_references_are_checked(override: dict[str, Any], message: str) -> None:
    item = {"from": "2026-03-10T18:00", "until": "2026-03-11T09:00", **override}
    assert rejected(edited(overrides=[item])) == message


def test_override_until_before_from() -> None:
    item = {"unit": "u1", "person": "chen", "from": "2026-03-11T09:00", "until": "2026-03-10T18:00"}
    msg = rejected(edited(overrides=[item]))
    assert msg == (
        "roster.yaml: overrides[0]: until 2026-03-10T18:00:00+08:00 is not after "
        "from 2026-03-11T09:00:00+08:00"
    )


def test_override_time_that_is_not_a_time() -> None:
    item = {"unit": "u1", "person": "chen", "from": "next monday", "until": 1773187200}
    msg = rejected(edited(overrides=[item]))
    assert "overrides[0].from: 'next monday' is not a timestamp" in msg
    assert "overrides[0].until: got the number 1773187200" in msg


@pytest.mark.parametrize(
    ("rotation", "message"),
    [
        (
            {"people": ["zhang"], "start": "2026-03-03", "handoff": {"weekday": "monday"}},
            "units.u1.levels.1.rotation: start: 2026-03-03 is a Tuesday, but handoff.weekday "
            "is Monday",
        ),
        (
            {"people": ["zhang"], "start": "2026-03-02", "handoff": {"weekday": "someday"}},
            "units.u1.levels.1.rotation.handoff.weekday: 'someday' is not a weekday",
        ),
        (
            {
                "people": ["zhang"],
                "start": "2026-03-02",
                "handoff": {"weekday": "mon"},
                "period_days": 3,
            },
            "units.u1.levels.1.rotation: handoff.weekday: a 3-day period does not keep a weekday",
        ),
        (
            {"people": ["zhang"], "start": "2026-03-02", "handoff": {"time": 1050}},
            "units.u1.levels.1.rotation.handoff.time: got the number 1050: YAML reads an "
            "unquoted 17:30 as minutes",
        ),
        (
            {"people": ["zhang"], "start": "2026-03-02", "handoff": {"time": "24:00"}},
            "units.u1.levels.1.rotation.handoff.time: time is HH:MM (00:00 to 23:59), got '24:00'",
        ),
        (
            {"people": [], "start": "2026-03-02"},
            "units.u1.levels.1.rotation.people: List should have at least 1 item",
        ),
        (
            {"people": ["zhang"], "start": "2026-03-02", "period_days": 0},
            "units.u1.levels.1.rotation.period_days: Input should be greater than or equal to 1",
        ),
        (
            {"people": ["zhang"]},
            "units.u1.levels.1.rotation.start: Field required",
        ),
        (
            {"people": ["zhang"], "start": "2026-03-02", "handof": {"time": "09:00"}},
            "units.u1.levels.1.rotation.handof: unknown key (misspelt?)",
        ),
    ],
)
def test_malformed_rotation(rotation: dict[str, Any], message: str) -> None:
    doc = edited()
    doc["units"]["u1"]["levels"][1]["rotation"] = rotation
    msg = rejected(doc)
    assert f"roster.yaml: {message}" in msg, msg


def test_levels_must_start_at_1_without_gaps() -> None:
    doc = edited()
    doc["units"]["u1"]["levels"] = {
        1: doc["units"]["u1"]["levels"][1],
        3: doc["units"]["u1"]["levels"][2],
    }
    assert (
        rejected(doc)
        == "roster.yaml: units.u1.levels: levels must be 1, 2, … without gaps; missing 2"
    )


def test_duplicate_person_and_reserved_unit() -> None:
    doc = edited(people=[*DOC["people"], _person(2, name="王五二")])
    assert rejected(doc) == "roster.yaml: people[7] (wang): id: already used by people[2]"
    doc = edited()
    doc["units"][EMERGENCY_OFFICE] = doc["units"]["u1"]
    assert rejected(doc).startswith("roster.yaml: units.emergency_office: reserved")


def test_every_problem_is_reported() -> None:
    doc = edited(
        overrides=[
            {"unit": "u2", "person": "chen", "from": "2026-03-10", "until": "2026-03-11"},
            {"unit": "u1", "person": "nobody", "from": "2026-03-10", "until": "2026-03-11"},
        ]
    )
    doc["units"]["u1"]["levels"][2]["rotation"]["people"] = ["ghost"]
    lines = rejected(doc).splitlines()
    assert lines == [
        "roster.yaml: units.u1.levels.2.rotation.people[0]: unknown person 'ghost' (not in people)",
        "roster.yaml: overrides[0]: unit: unknown unit 'u2' (roster has: emergency_office, u1)",
        "roster.yaml: overrides[1]: person: unknown person 'nobody' (not in people)",
    ]


def test_top_level_problems() -> None:
    assert "roster.yaml: (document): Input should be a valid dictionary" in rejected(["a"])
    assert "roster.yaml: people: Field required" in rejected({"units": {}})
    assert "roster.yaml: timezone: Input should be 'Asia/Shanghai'" in rejected(
        edited(timezone="UTC")
    )
    assert "roster.yaml: shifts: unknown key (misspelt?)" in rejected(edited(shifts=[]))


# --- files ------------------------------------------------------------------------------------


def test_load_roster_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "roster.yaml"
    path.write_text(ROSTER_YAML, encoding="utf-8")
    r = load_roster(path)
    assert r.source == str(path) and r.name == "测试值班表"
    assert who(r, "u1", 1, cst("2026-03-09T09:00:00")) == ["li", "zhang"]


def test_load_roster_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(ROSTER_YAML.replace("people: [zhang, li]", "people: [zhang, lee]"), "utf-8")
    with pytest.raises(
        RosterError, match=r"bad\.yaml: units\.u1\.levels\.1\.rotation\.people\[1\]"
    ):
        load_roster(path)
    path.write_text("people: [\n", encoding="utf-8")
    with pytest.raises(RosterError, match=r"bad\.yaml: not valid YAML"):
        load_roster(path)
    path.write_text("", encoding="utf-8")
    with pytest.raises(RosterError, match=r"bad\.yaml: empty file"):
        load_roster(path)
    with pytest.raises(RosterError, match=r"missing\.yaml: cannot read"):
        load_roster(tmp_path / "missing.yaml")
