"""``govclock replay``: the JSON report's shape, the sample history's outcomes, --as-of, bad lines.

The expected outcomes of the sample history are worked out by hand from the rules
(``govclock rules show ...``) and the official 2026 holiday table: Spring Festival 15-23
February with 14 and 28 February (Saturdays) worked, Qingming 4-6 April, May Day 1-5 May
with 9 May (Saturday) worked.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from govclock.cli import main

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "examples" / "sample-history.jsonl"
UNITS = ROOT / "examples" / "units.yaml"

REQUIRED_KEYS = {
    "rule_id",
    "subject_id",
    "unit",
    "opened_at",
    "due_at",
    "status",
    "fulfilled_at",
    "fulfilled_by",
    "calendar_assumed",
    "timeline",
}
EXTRA_KEYS = {"id", "rule_version", "fulfilled_date_only"}
STATUSES = {"pending", "paused", "met", "late", "missed", "unverifiable", "cancelled"}
RFC3339_CST = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\+08:00$")
EIGHT_HOURS = timedelta(hours=8)


def run_cli(*argv: str) -> tuple[int, str, str]:
    """``main(argv)`` with stdout and stderr captured (usable from module-scoped fixtures)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def replay_json(path: Path, *args: str, units: bool = True) -> tuple[dict[str, Any], str]:
    extra = ["--units", str(UNITS)] if units else []
    code, out, err = run_cli("replay", str(path), "--format", "json", *extra, *args)
    assert code == 0, err
    report: dict[str, Any] = json.loads(out)
    return report, err


def find(report: dict[str, Any], rule_id: str, subject_id: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [
        o
        for o in report["obligations"]
        if o["rule_id"] == rule_id and o["subject_id"] == subject_id
    ]
    assert len(matches) == 1, f"{rule_id} x {subject_id}: {len(matches)} obligations"
    return matches[0]


def cst(ts: str) -> datetime:
    """Parse an RFC 3339 timestamp that must carry the +08:00 offset."""
    assert RFC3339_CST.match(ts), ts
    value = datetime.fromisoformat(ts)
    assert value.utcoffset() == EIGHT_HOURS, ts
    return value


def write_history(tmp_path: Path, lines: list[str], name: str = "h.jsonl") -> Path:
    path = tmp_path / name
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


def event(**fields: Any) -> str:
    return json.dumps(fields, ensure_ascii=False)


PUBLICATION = event(
    event_id="p1",
    type="document.published",
    unit="u1",
    publication_id="P1",
    published_at="2026-03-09T16:05:00+08:00",
    kind="press_release",
    channel="portal",
    url="https://u1.example/1.html",
    refs={"incident_id": "I-1"},
)
INCIDENT = event(
    event_id="i1",
    type="incident.reported",
    unit="u1",
    incident_id="I-1",
    occurred_at="2026-03-09T14:20:00+08:00",
    title="fire",
    severity="II",
    deaths=1,
)


@pytest.fixture(scope="module")
def sample() -> tuple[dict[str, Any], str]:
    """The sample history replayed to its last event, with its stderr."""
    return replay_json(SAMPLE)


@pytest.fixture(scope="module")
def report(sample: tuple[dict[str, Any], str]) -> dict[str, Any]:
    return sample[0]


# -- shape --------------------------------------------------------------------------------


def test_every_obligation_has_exactly_the_documented_keys(report: dict[str, Any]) -> None:
    assert report["obligations"], "the sample history opens obligations"
    for ob in report["obligations"]:
        assert set(ob) == REQUIRED_KEYS | EXTRA_KEYS, ob.get("id")
        assert ob["status"] in STATUSES
        assert isinstance(ob["calendar_assumed"], bool)
        assert isinstance(ob["fulfilled_date_only"], bool)
        assert ob["id"] == f"{ob['rule_id']}:{ob['subject_id']}"
        # fulfilled_at and fulfilled_by come together, and only once decided by evidence
        assert (ob["fulfilled_at"] is None) == (ob["fulfilled_by"] is None), ob["id"]
        if ob["status"] in ("met", "late", "unverifiable"):
            assert isinstance(ob["fulfilled_by"], str), ob["id"]
        if ob["status"] in ("missed", "pending"):
            assert ob["fulfilled_by"] is None, ob["id"]


def test_times_are_rfc3339_in_china_standard_time(report: dict[str, Any]) -> None:
    cst(report["as_of"])
    for ob in report["obligations"]:
        opened, due = cst(ob["opened_at"]), cst(ob["due_at"])
        assert opened < due, ob["id"]
        if ob["fulfilled_at"] is not None:
            cst(ob["fulfilled_at"])
        for entry in ob["timeline"]:
            cst(entry["at"])


def test_timeline_entries(report: dict[str, Any]) -> None:
    for ob in report["obligations"]:
        timeline = ob["timeline"]
        assert timeline, ob["id"]
        for entry in timeline:
            assert {"at", "kind", "event_id"} <= set(entry), entry
            assert isinstance(entry["kind"], str) and entry["kind"]
            assert entry["event_id"] is None or isinstance(entry["event_id"], str)
        ats = [cst(e["at"]) for e in timeline]
        assert ats == sorted(ats), f"{ob['id']}: timeline out of order"
        assert [e["kind"] for e in timeline].count("opened") == 1, ob["id"]
        if ob["fulfilled_by"] is not None:
            closing = [e for e in timeline if e["event_id"] == ob["fulfilled_by"]]
            assert [e["kind"] for e in closing] == [ob["status"]], ob["id"]
        if ob["status"] == "missed":
            assert timeline[-1]["kind"] == "breached"
            assert timeline[-1]["at"] == ob["due_at"]


def recount(obligations: list[dict[str, Any]]) -> dict[str, Any]:
    counts = dict.fromkeys(STATUSES, 0)
    for ob in obligations:
        counts[ob["status"]] += 1
    decided = counts["met"] + counts["late"] + counts["missed"]
    rate = round(counts["met"] / decided, 4) if decided else None
    return {**counts, "decided": decided, "on_time_rate": rate}


@pytest.mark.parametrize("as_of", [None, "2026-03-10", "2026-03-17", "2026-02-21"])
def test_on_time_rates_recomputed_from_the_obligations(as_of: str | None) -> None:
    report, _ = replay_json(SAMPLE, *(["--as-of", as_of] if as_of else []))
    obs = report["obligations"]
    on_time = report["on_time"]
    for key, field in (("by_unit", "unit"), ("by_rule", "rule_id")):
        groups = on_time[key]
        assert set(groups) == {o[field] for o in obs}
        for name, got in groups.items():
            want = recount([o for o in obs if o[field] == name])
            assert {k: got[k] for k in want} == want, f"{key}[{name}]"
    want_all = recount(obs)
    assert {k: on_time["overall"][k] for k in want_all} == want_all


def test_sample_overall_rate(report: dict[str, Any]) -> None:
    overall = report["on_time"]["overall"]
    # Watching starts at the earliest event (2026-02-12), so the county government's annual
    # report (due 02-20, never published) is judged: missed.
    assert len(report["obligations"]) == 22
    assert (overall["met"], overall["late"], overall["missed"]) == (12, 4, 3)
    assert (overall["unverifiable"], overall["pending"]) == (1, 2)
    assert overall["on_time_rate"] == pytest.approx(12 / 19, abs=1e-4)
    assert report["on_time"]["by_unit"]["zz-fgw"]["on_time_rate"] == 1.0
    assert report["on_time"]["by_rule"]["power_list_10wd"]["on_time_rate"] == 0.0
    # unverifiable is counted but not decided: first_release_5h is 1 met, 1 unverifiable
    first = report["on_time"]["by_rule"]["first_release_5h"]
    assert (first["met"], first["unverifiable"], first["decided"]) == (1, 1, 1)
    assert first["on_time_rate"] == 1.0


# -- the sample history's outcomes, by hand --------------------------------------------------

# (rule_id, subject_id, unit, status, due_at, fulfilled_by)
KNOWN = [
    # issued Thu 12 Feb; 13, 14 (worked Sat), 24-28 Feb (28 worked), 2, 3, 4 Mar = 10 WD
    ("online_posting_10wd", "沪交规〔2026〕2号", "sh-jiaowei", "met",
     "2026-03-04T23:59:59+08:00", "cms-0002"),
    # issued Mon 2 Mar, 10 WD -> Mon 16 Mar; nothing ever published for it
    ("online_posting_10wd", "沪交〔2026〕15号", "sh-jiaowei", "missed",
     "2026-03-16T23:59:59+08:00", None),
    # issued Thu 5 Mar -> Thu 19 Mar; a feed gives only the date 20 Mar: late all the same
    ("online_posting_10wd", "沪交〔2026〕21号", "sh-jiaowei", "late",
     "2026-03-19T23:59:59+08:00", "feed-0001"),
    # occurred 09:00, 5 h -> 14:00; the release carries only the date 20 Mar
    ("first_release_5h", "I-2026-045", "sh-yingji", "unverifiable",
     "2026-03-20T14:00:00+08:00", "feed-0002"),
    # the release (line 1) precedes the incident (line 2) in the file
    ("first_release_5h", "I-2026-031", "sh-yingji", "met",
     "2026-03-09T19:20:00+08:00", "cms-0001"),
    # 12 deaths (>= 10): 24 h from 14:20; the press conference is at 15:30 the next day
    ("press_conference_24h", "I-2026-031", "sh-yingji", "late",
     "2026-03-10T14:20:00+08:00", "cms-0006"),
    # 60 injured (>= 50): 24 h from 09:00; conference at 08:30 the next day
    ("press_conference_24h", "I-2026-045", "sh-yingji", "met",
     "2026-03-21T09:00:00+08:00", "cms-0015"),
    # Zhengzhou pack: interpretation within 3 WD of Thu 12 Mar -> Tue 17 Mar; out Mon 16 Mar
    ("interpretation_3wd", "郑发改〔2026〕8号", "zz-fgw", "met",
     "2026-03-17T23:59:59+08:00", "zz-0002"),
    ("interpretation_same_day", "沪府规〔2026〕3号", "sh-gov", "met",
     "2026-03-12T23:59:59+08:00", "cms-0008"),
    ("interpretation_same_day", "沪交规〔2026〕4号", "sh-jiaowei", "late",
     "2026-03-13T23:59:59+08:00", "cms-0010"),
    # received Mon 2 Mar; correction asked 4 Mar, corrected Fri 6 Mar: 20 WD from then
    ("application_reply_20wd", "A-2026-0042", "sh-gov", "met",
     "2026-04-03T23:59:59+08:00", "cms-0017"),
    # received Tue 10 Mar: 20 WD -> Wed 8 Apr (Qingming 4-6 Apr); +20 WD -> Sat 9 May (worked)
    ("application_reply_20wd", "A-2026-0043", "sh-gov", "pending",
     "2026-05-09T23:59:59+08:00", None),
    ("double_publicity_7wd", "XK-2026-0301", "sh-jiaowei", "met",
     "2026-03-11T23:59:59+08:00", "cms-0003"),
    ("double_publicity_7wd", "CF-2026-0303", "sh-jiaowei", "missed",
     "2026-03-12T23:59:59+08:00", None),
    ("power_list_10wd", "JG-2026-01", "sh-gov", "late",
     "2026-03-16T23:59:59+08:00", "cms-0013"),
    ("rumor_rebuttal", "O-2026-0102", "sh-jiaowei", "met",
     "2026-03-19T09:00:00+08:00", "cms-0011"),
    ("opinion_response_48h", "O-2026-0103", "sh-gov", "pending",
     "2026-04-09T10:00:00+08:00", None),
    # sh-gov is a "government" in units.yaml: 31 March, not 31 January
    ("annual_report", "sh-gov/2025", "sh-gov", "met",
     "2026-03-31T23:59:59+08:00", "cms-0018"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("rule_id", "subject_id", "unit", "status", "due_at", "fulfilled_by"),
    KNOWN,
    ids=[f"{k[0]}:{k[1]}" for k in KNOWN],
)
def test_sample_known_outcomes(
    report: dict[str, Any],
    rule_id: str,
    subject_id: str,
    unit: str,
    status: str,
    due_at: str,
    fulfilled_by: str | None,
) -> None:
    ob = find(report, rule_id, subject_id)
    got = (ob["unit"], ob["status"], ob["due_at"], ob["fulfilled_by"])
    assert got == (unit, status, due_at, fulfilled_by)


def test_date_only_evidence_is_flagged(report: dict[str, Any]) -> None:
    unverifiable = find(report, "first_release_5h", "I-2026-045")
    assert unverifiable["fulfilled_date_only"] is True
    assert unverifiable["fulfilled_at"].startswith("2026-03-20")
    late = find(report, "online_posting_10wd", "沪交〔2026〕21号")
    assert late["fulfilled_date_only"] is True
    assert find(report, "online_posting_10wd", "沪交规〔2026〕2号")["fulfilled_date_only"] is False


def test_correction_pauses_then_restarts_the_application_clock(report: dict[str, Any]) -> None:
    ob = find(report, "application_reply_20wd", "A-2026-0042")
    steps = [(e["kind"], e["event_id"]) for e in ob["timeline"]]
    assert steps[0] == ("opened", "app-0042-r")
    assert ("paused", "app-0042-c1") in steps
    assert ("restarted", "app-0042-c2") in steps
    assert steps[-1] == ("met", "cms-0017")


def test_duplicate_event_counted_once(report: dict[str, Any]) -> None:
    assert report["events"]["duplicates"] == 1
    conference = find(report, "press_conference_24h", "I-2026-031")
    ids = [e["event_id"] for e in conference["timeline"]]
    assert ids.count("cms-0006") == 1
    all_ids = [e["event_id"] for o in report["obligations"] for e in o["timeline"]]
    # cms-0006 closes two obligations (the conference and the opinion's 24 h), once each
    assert all_ids.count("cms-0006") == 2
    assert find(report, "opinion_major_24h", "O-2026-0101")["fulfilled_by"] == "cms-0006"


def test_sample_event_counts_and_default_as_of(report: dict[str, Any]) -> None:
    # 38 lines: 1 rejected (26), 1 duplicate (19); news-0001 names no subject
    assert report["events"] == {
        "applied": 36,
        "duplicates": 1,
        "without_subject": 1,
        "after_as_of": 0,
        "rejected": 1,
    }
    assert report["as_of"] == "2026-04-07T10:00:00+08:00"  # the last event, op-0103
    assert report["source"] == str(SAMPLE)


def test_line_26_rejected_naming_severity(sample: tuple[dict[str, Any], str]) -> None:
    report, err = sample
    assert [r["line"] for r in report["rejected"]] == [26]
    assert "severity" in report["rejected"][0]["reason"]
    assert f"{SAMPLE}:26: rejected:" in err and "severity" in err
    assert not any(o["subject_id"] == "I-2026-040" for o in report["obligations"])


# -- --as-of ----------------------------------------------------------------------------------


def test_as_of_date_is_the_end_of_that_day_and_leaves_later_events_out() -> None:
    report, _ = replay_json(SAMPLE, "--as-of", "2026-03-10")
    assert report["as_of"] == "2026-03-10T23:59:59+08:00"
    # lines 1-19 are stamped on or before 10 March; 20-38 after, less rejected line 26
    assert report["events"]["after_as_of"] == 18
    assert report["events"]["applied"] == 18  # 19 lines, one a duplicate
    as_of = cst(report["as_of"])
    for ob in report["obligations"]:
        assert cst(ob["opened_at"]) <= as_of, ob["id"]
        assert all(cst(e["at"]) <= as_of for e in ob["timeline"]), ob["id"]
    # still pending on 10 March, missed by the end of the history
    assert find(report, "online_posting_10wd", "沪交〔2026〕15号")["status"] == "pending"
    assert find(report, "double_publicity_7wd", "CF-2026-0303")["status"] == "pending"
    assert find(report, "power_list_10wd", "JG-2026-01")["status"] == "pending"
    # the extension (3 April) has not happened yet
    assert find(report, "application_reply_20wd", "A-2026-0043")["due_at"] == (
        "2026-04-08T23:59:59+08:00"
    )
    # published on 12 March: no obligation yet
    assert not any(o["subject_id"] == "沪府规〔2026〕3号" for o in report["obligations"])
    # the press conference at 15:30 on 10 March is in
    assert find(report, "press_conference_24h", "I-2026-031")["status"] == "late"


@pytest.mark.parametrize(
    ("as_of", "shown", "status"),
    [
        # before the conference at 15:30 the 14:20 deadline has passed unmet
        ("2026-03-10T15:00:00+08:00", "2026-03-10T15:00:00+08:00", "missed"),
        ("2026-03-10T15:30:00+08:00", "2026-03-10T15:30:00+08:00", "late"),
        # the same instant written in UTC
        ("2026-03-10T07:30:00Z", "2026-03-10T15:30:00+08:00", "late"),
        ("2026-03-10T07:00:00+00:00", "2026-03-10T15:00:00+08:00", "missed"),
        # before the deadline: still pending
        ("2026-03-10T14:00:00+08:00", "2026-03-10T14:00:00+08:00", "pending"),
    ],
)
def test_as_of_rfc3339(as_of: str, shown: str, status: str) -> None:
    report, _ = replay_json(SAMPLE, "--as-of", as_of)
    assert report["as_of"] == shown
    assert find(report, "press_conference_24h", "I-2026-031")["status"] == status


@pytest.mark.parametrize(
    ("as_of", "needle"),
    [
        ("2026-03-10T12:00:00", "offset"),  # naive: which zone?
        ("2026-03-10 12:00:00", "offset"),
        ("yesterday", "--as-of"),
        ("2026-02-30", "--as-of"),
    ],
)
def test_as_of_rejected_with_a_clear_message(
    capsys: pytest.CaptureFixture[str], as_of: str, needle: str
) -> None:
    code = main(["replay", str(SAMPLE), "--as-of", as_of, "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    line = [ln for ln in err.splitlines() if ln.startswith("govclock:")]
    assert len(line) == 1, err
    assert needle in line[0] and as_of in line[0]


# -- bad lines --------------------------------------------------------------------------------


@pytest.fixture
def messy(tmp_path: Path) -> Path:
    return write_history(
        tmp_path,
        [
            PUBLICATION,  # 1
            "{not json",  # 2: not JSON
            "",  # 3: blank, skipped
            "[1, 2]",  # 4: JSON, not an object
            "   ",  # 5: blank too
            INCIDENT,  # 6
            INCIDENT.replace('"i1"', '"i2"').replace("+08:00", ""),  # 7: naive time
            event(event_id="x", type="no.such.type", unit="u1"),  # 8: unknown type
        ],
    )


def test_bad_lines_reported_and_the_rest_processed(
    capsys: pytest.CaptureFixture[str], messy: Path
) -> None:
    code = main(["replay", str(messy), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 0
    report = json.loads(out)
    rejected = {r["line"]: r["reason"] for r in report["rejected"]}
    assert sorted(rejected) == [2, 4, 7, 8]
    assert "JSON" in rejected[2]
    assert "object" in rejected[4]
    assert "occurred_at" in rejected[7]
    assert "type" in rejected[8]
    assert report["events"]["rejected"] == 4
    assert report["events"]["applied"] == 2
    for number in (2, 4, 7, 8):
        assert f"{messy}:{number}: rejected: " in err
    assert f"{messy}:3:" not in err and f"{messy}:5:" not in err
    ob = find(report, "first_release_5h", "I-1")
    assert (ob["status"], ob["fulfilled_by"]) == ("met", "p1")


def test_bad_lines_listed_in_the_table_too(capsys: pytest.CaptureFixture[str], messy: Path) -> None:
    assert main(["replay", str(messy)]) == 0
    out, _ = capsys.readouterr()
    for number in (2, 4, 7, 8):
        assert f"rejected line {number}: " in out


def test_strict_makes_a_bad_line_fatal(capsys: pytest.CaptureFixture[str], messy: Path) -> None:
    code = main(["replay", str(messy), "--strict", "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert f"{messy}:2: (event): not valid JSON" in err


def test_strict_on_the_sample_names_line_26(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["replay", str(SAMPLE), "--strict", "--units", str(UNITS)])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert re.search(rf"{re.escape(str(SAMPLE))}:26: .*severity", err), err


def test_strict_accepts_a_clean_history(tmp_path: Path) -> None:
    path = write_history(tmp_path, [PUBLICATION, "", INCIDENT])
    report, err = replay_json(path, "--strict", units=False)
    assert report["rejected"] == []
    assert err == ""
    assert find(report, "first_release_5h", "I-1")["status"] == "met"


@pytest.mark.parametrize("lines", [[], ["", "  "], ["{not json"]], ids=["empty", "blank", "bad"])
def test_no_events_without_as_of_is_an_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, lines: list[str]
) -> None:
    path = write_history(tmp_path, lines)
    code = main(["replay", str(path), "--format", "json"])
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert "no events" in err and "--as-of" in err


def test_no_events_with_as_of_is_an_empty_report(tmp_path: Path) -> None:
    path = write_history(tmp_path, [])
    report, _ = replay_json(path, "--as-of", "2026-03-10", units=False)
    assert report["obligations"] == []
    assert report["on_time"]["overall"]["on_time_rate"] is None
    assert report["as_of"] == "2026-03-10T23:59:59+08:00"


def test_missing_file_is_an_error(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code = main(["replay", str(tmp_path / "nope.jsonl")])
    _, err = capsys.readouterr()
    assert code == 2
    assert err.startswith("govclock:") and "nope.jsonl" in err


# -- determinism and order --------------------------------------------------------------------


def test_replaying_twice_gives_identical_json() -> None:
    first = run_cli("replay", str(SAMPLE), "--units", str(UNITS), "--format", "json")
    second = run_cli("replay", str(SAMPLE), "--units", str(UNITS), "--format", "json")
    assert first == second
    assert first[0] == 0


def test_replay_is_independent_of_hash_seed() -> None:
    """End to end through the installed script, in two processes with different hash seeds."""
    script = Path(sys.executable).with_name("govclock")
    if not script.exists():
        pytest.skip("govclock script not installed next to the interpreter")
    outs = []
    for seed in ("1", "2"):
        proc = subprocess.run(
            [str(script), "replay", str(SAMPLE), "--units", str(UNITS), "--format", "json"],
            capture_output=True,
            text=True,
            env={**os.environ, "PYTHONHASHSEED": seed},
            timeout=60,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr
        outs.append(proc.stdout)
    assert outs[0] == outs[1]
    assert json.loads(outs[0])["obligations"]


@pytest.mark.parametrize("order", ["publication first", "trigger first"])
def test_publication_before_its_trigger_still_meets(tmp_path: Path, order: str) -> None:
    lines = [PUBLICATION, INCIDENT] if order == "publication first" else [INCIDENT, PUBLICATION]
    report, _ = replay_json(write_history(tmp_path, lines), units=False)
    ob = find(report, "first_release_5h", "I-1")
    assert (ob["status"], ob["fulfilled_by"]) == ("met", "p1")
    assert ob["fulfilled_at"] == "2026-03-09T16:05:00+08:00"
    assert ob["due_at"] == "2026-03-09T19:20:00+08:00"
    # one death: no press-conference duty
    assert not any(o["rule_id"] == "press_conference_24h" for o in report["obligations"])


def test_publication_after_the_deadline_is_late_and_without_one_missed(tmp_path: Path) -> None:
    late_pub = PUBLICATION.replace("2026-03-09T16:05:00", "2026-03-09T19:21:00")
    report, _ = replay_json(write_history(tmp_path, [INCIDENT, late_pub]), units=False)
    assert find(report, "first_release_5h", "I-1")["status"] == "late"
    report, _ = replay_json(
        write_history(tmp_path, [INCIDENT], "alone.jsonl"), "--as-of", "2026-03-10", units=False
    )
    assert find(report, "first_release_5h", "I-1")["status"] == "missed"
