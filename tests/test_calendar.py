"""Official working days: worked examples, independent references, unknown years, table files."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import chinese_calendar
import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

import deadlines.calendar as calendar_module
from config.calendar_files import (
    CalendarFileError,
    load_calendar_file,
    parse_calendar_document,
)
from deadlines.calendar import (
    ASSUMED_FIXED_HOLIDAYS,
    CalendarYear,
    WorkCalendar,
    day_end,
    day_of,
    day_start,
    official_years,
)

D = date.fromisoformat
OFFICIAL = WorkCalendar.official()
DOC = Path(__file__).resolve().parents[1] / "docs" / "calendar.md"


def _doc_example() -> str:
    match = re.search(r"```yaml\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    assert match, "docs/calendar.md lost its YAML example"
    return match.group(1)


def _cal_2027() -> WorkCalendar:
    return OFFICIAL.with_years(parse_calendar_document(yaml.safe_load(_doc_example()), "doc"))


# --- worked examples (checked by hand against the State Council notices) ----------------------


@pytest.mark.parametrize(
    ("start", "n", "expected"),
    [
        # rules.md: Feb 14 and Feb 28 are make-up Saturdays; Feb 15-23 Spring Festival.
        ("2026-02-12", 10, "2026-03-04"),
        # rules.md: start on a non-working day; the next Monday is day 1.
        ("2026-03-07", 10, "2026-03-20"),
        # 2025 National Day + Mid-Autumn: Oct 1-8 off, make-up Sun Sep 28 and Sat Oct 11.
        ("2025-09-26", 1, "2025-09-28"),
        ("2025-09-26", 5, "2025-10-10"),
        ("2025-09-30", 3, "2025-10-11"),
        ("2025-10-01", 1, "2025-10-09"),  # start on a holiday
        # 2025 Spring Festival: Jan 28 - Feb 4 off, make-up Sun Jan 26 and Sat Feb 8.
        ("2025-01-24", 2, "2025-01-27"),
        ("2025-01-24", 3, "2025-02-05"),
        ("2025-02-05", 3, "2025-02-08"),
        # 2025 Labour Day: May 1-5 off, make-up Sun Apr 27.
        ("2025-04-25", 1, "2025-04-27"),
        ("2025-04-30", 1, "2025-05-06"),
        # Across the year: Jan 1-3 2026 off, make-up Sun Jan 4 2026.
        ("2025-12-31", 1, "2026-01-04"),
        # 2026 Labour Day: May 1-5 off, make-up Sat May 9.
        ("2026-04-30", 5, "2026-05-11"),
        # 2026 National Day: Oct 1-7 off, make-up Sat Oct 10; Mid-Autumn Sep 25-27.
        ("2026-09-24", 1, "2026-09-28"),
        ("2026-09-30", 4, "2026-10-12"),
    ],
)
def test_worked_examples(start: str, n: int, expected: str) -> None:
    assert OFFICIAL.add_working_days(D(start), n) == (D(expected), False)
    assert OFFICIAL.working_days_between(D(start), D(expected)) == (n, False)


def test_find_workday_bug_is_not_inherited() -> None:
    # chinese_calendar counts the non-working start day's next working day as day 0.
    assert chinese_calendar.find_workday(10, D("2026-03-07")) == D("2026-03-23")
    assert OFFICIAL.add_working_days(D("2026-03-07"), 10) == (D("2026-03-20"), False)


def test_is_working_day_and_last_working_day() -> None:
    assert OFFICIAL.is_working_day(D("2026-02-14"))  # make-up Saturday
    assert not OFFICIAL.is_working_day(D("2026-02-16"))  # Spring Festival Monday
    assert not OFFICIAL.is_working_day(D("2026-03-07"))  # ordinary Saturday
    assert OFFICIAL.last_working_day_on_or_before(D("2026-02-22")) == D("2026-02-14")
    assert OFFICIAL.last_working_day_on_or_before(D("2026-03-04")) == D("2026-03-04")
    assert OFFICIAL.last_working_day_on_or_before(D("2026-01-03")) == D("2025-12-31")


def test_zero_negative_and_empty_spans() -> None:
    assert OFFICIAL.add_working_days(D("2026-03-07"), 0) == (D("2026-03-07"), False)
    assert OFFICIAL.add_working_days(D("2027-03-07"), 0) == (D("2027-03-07"), True)
    with pytest.raises(ValueError, match="n must be >= 0"):
        OFFICIAL.add_working_days(D("2026-03-07"), -1)
    assert OFFICIAL.working_days_between(D("2026-03-07"), D("2026-03-07")) == (0, False)
    assert OFFICIAL.working_days_between(D("2027-03-07"), D("2027-03-01")) == (0, False)


def test_official_calendar_is_cached_and_covers_2004_to_2026() -> None:
    assert WorkCalendar.official() is OFFICIAL
    assert OFFICIAL.known_years == frozenset(range(2004, 2027))
    assert OFFICIAL.is_known(2026)
    assert not OFFICIAL.is_known(2027)
    assert not OFFICIAL.is_known(2003)


def test_fingerprint() -> None:
    # Pinned: changes only if chinese-calendar's data or the fingerprint scheme changes.
    assert OFFICIAL.fingerprint == "694885bc7965"
    assert WorkCalendar.from_years(official_years()).fingerprint == OFFICIAL.fingerprint
    assert _cal_2027().fingerprint != OFFICIAL.fingerprint
    assert re.fullmatch(r"[0-9a-f]{12}", OFFICIAL.fingerprint)


def test_memo_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(calendar_module, "_MEMO_LIMIT", 10)
    cal = WorkCalendar.from_years(official_years())
    start = D("2026-01-05").toordinal()
    for n in range(1, 50):
        assert cal.add_working_days_ord(start, n) == OFFICIAL.add_working_days_ord(start, n)
        assert len(cal._memo) <= 10


def test_calendar_year_rejects_bad_tables() -> None:
    with pytest.raises(ValueError, match="Monday, not a weekend day"):
        CalendarYear(2027, frozenset(), frozenset({D("2027-02-15")}), "t")
    with pytest.raises(ValueError, match="not in 2027"):
        CalendarYear(2027, frozenset({D("2028-01-03")}), frozenset(), "t")
    with pytest.raises(ValueError, match="both a holiday and a workday"):
        CalendarYear(2027, frozenset({D("2027-02-06")}), frozenset({D("2027-02-06")}), "t")
    table = CalendarYear(2027, frozenset(), frozenset(), "t")
    with pytest.raises(ValueError, match="given twice"):
        WorkCalendar.from_years([table, table])


# --- years without a table --------------------------------------------------------------------


def test_unknown_year_uses_the_assumed_rule() -> None:
    cal = OFFICIAL
    for md in ("01-01", "05-01", "05-02", "10-01", "10-02", "10-03"):
        assert not cal.is_working_day(D(f"2027-{md}"))
    assert not cal.is_working_day(D("2027-01-02"))  # Saturday
    assert cal.is_working_day(D("2027-01-04"))  # Monday
    assert cal.is_working_day(D("2027-02-08"))  # Spring Festival Monday: not knowable, worked
    assert cal.add_working_days(D("2027-01-01"), 1) == (D("2027-01-04"), True)
    assert cal.add_working_days(D("2027-09-30"), 2) == (D("2027-10-05"), True)
    assert cal.working_days_between(D("2027-01-01"), D("2027-01-08")) == (5, True)


def test_span_from_known_into_unknown_year_is_assumed() -> None:
    assert OFFICIAL.add_working_days(D("2026-12-30"), 1) == (D("2026-12-31"), False)
    assert OFFICIAL.add_working_days(D("2026-12-30"), 3) == (D("2027-01-05"), True)
    assert OFFICIAL.working_days_between(D("2026-12-01"), D("2026-12-31"))[1] is False
    assert OFFICIAL.working_days_between(D("2026-12-01"), D("2027-01-04"))[1] is True
    # Counting from the last day of an unknown year into a known one assumes nothing.
    assert OFFICIAL.add_working_days(D("2003-12-31"), 1) == (D("2004-01-02"), False)


def test_loading_a_year_changes_results_and_clears_the_flag() -> None:
    cal = _cal_2027()
    assert cal.is_known(2027)
    assert cal.known_years == OFFICIAL.known_years | {2027}
    # Spring Festival 2027 (example table): Feb 5-13 off.
    assert OFFICIAL.add_working_days(D("2027-02-04"), 1) == (D("2027-02-05"), True)
    assert cal.add_working_days(D("2027-02-04"), 1) == (D("2027-02-15"), False)
    assert cal.add_working_days(D("2026-12-30"), 3) == (D("2027-01-05"), False)
    assert cal.is_working_day(D("2027-01-31"))  # make-up Sunday
    assert not OFFICIAL.is_working_day(D("2027-01-31"))  # the old calendar is unchanged
    # A loaded year replaces an official one.
    replaced = OFFICIAL.with_years([CalendarYear(2026, frozenset(), frozenset(), "test")])
    assert replaced.add_working_days(D("2026-02-12"), 10) == (D("2026-02-26"), False)


@pytest.mark.parametrize("year", [1900, 1949, 2003, 2100, 2199, 2200])
def test_far_years_do_not_crash(year: int) -> None:
    start = date(year, 12, 20)
    day, assumed = OFFICIAL.add_working_days(start, 30)
    assert assumed and day > start and OFFICIAL.is_working_day(day)
    assert OFFICIAL.working_days_between(start, day) == (30, True)
    assert OFFICIAL.last_working_day_on_or_before(date(year, 1, 1)) < date(year, 1, 1)


# --- Hypothesis: independent references --------------------------------------------------------

YEARS = (2030, 2031)
LO, HI = date(YEARS[0], 1, 1), date(YEARS[-1], 12, 31)
table_dates = st.dates(min_value=LO, max_value=HI)
weekend_dates = st.builds(
    lambda week, k: date(2030, 1, 7) + timedelta(days=7 * week + k),  # 2030-01-07 is a Monday
    st.integers(0, 102),
    st.sampled_from([5, 6]),
)


def _tables(holidays: set[date], workdays: set[date]) -> list[CalendarYear]:
    return [
        CalendarYear(
            year,
            frozenset(d for d in holidays - workdays if d.year == year),
            frozenset(d for d in workdays if d.year == year),
            "hypothesis",
        )
        for year in YEARS
    ]


def _reference_is_working(holidays: set[date], workdays: set[date]) -> Callable[[date], bool]:
    """Day-by-day rule, written independently of the module (tables for YEARS only)."""

    def is_working(day: date) -> bool:
        if day.year in YEARS:
            return day in workdays or (day.weekday() < 5 and day not in holidays)
        return day.weekday() < 5 and (day.month, day.day) not in ASSUMED_FIXED_HOLIDAYS

    return is_working


def _fixed_holidays(years: range) -> list[date]:
    return [date(y, m, d) for y in years for m, d in ASSUMED_FIXED_HOLIDAYS]


@settings(max_examples=200, deadline=None)
@given(
    holidays=st.sets(table_dates.filter(lambda d: d.weekday() < 5), max_size=150),
    start=st.dates(min_value=LO - timedelta(days=3), max_value=HI),
    n=st.integers(1, 300),
)
def test_matches_numpy_busday_offset(holidays: set[date], start: date, n: int) -> None:
    cal = WorkCalendar.from_years(_tables(holidays, set()))
    outside = _fixed_holidays(range(2025, 2030)) + _fixed_holidays(range(2032, 2036))
    expected = np.busday_offset(
        np.datetime64(start + timedelta(days=1), "D"),
        n - 1,
        roll="forward",
        holidays=sorted(holidays) + outside,
    )
    assert cal.add_working_days(start, n)[0] == expected.astype(date)


@settings(max_examples=200, deadline=None)
@given(
    holidays=st.sets(table_dates, max_size=150),
    workdays=st.sets(weekend_dates, max_size=40),
    start=st.dates(min_value=LO - timedelta(days=10), max_value=HI),
    n=st.integers(0, 300),
    span=st.integers(-5, 400),
)
def test_matches_brute_force_with_make_up_days(
    holidays: set[date], workdays: set[date], start: date, n: int, span: int
) -> None:
    cal = WorkCalendar.from_years(_tables(holidays, workdays))
    is_working = _reference_is_working(holidays - workdays, workdays)

    day, seen, assumed = start, 0, False
    while seen < n:
        day += timedelta(days=1)
        assumed = assumed or day.year not in YEARS
        seen += is_working(day)
    if n == 0:
        assumed = start.year not in YEARS
    assert cal.add_working_days(start, n) == (day, assumed)

    through = start + timedelta(days=span)
    days = [start + timedelta(days=k) for k in range(1, span + 1)]
    expected_count = sum(map(is_working, days))
    expected_assumed = any(d.year not in YEARS for d in days)
    assert cal.working_days_between(start, through) == (expected_count, expected_assumed)
    assert cal.is_working_day(through) == is_working(through)


@settings(max_examples=300, deadline=None)
@given(
    start=st.dates(min_value=date(2004, 1, 1), max_value=date(2026, 10, 31)), n=st.integers(0, 40)
)
def test_official_matches_chinese_calendar_is_workday(start: date, n: int) -> None:
    day, seen = start, 0
    while seen < n:
        day += timedelta(days=1)
        seen += chinese_calendar.is_workday(day)
    assert OFFICIAL.add_working_days(start, n) == (day, False)


@settings(max_examples=300, deadline=None)
@given(
    start=st.dates(min_value=date(1995, 1, 1), max_value=date(2035, 12, 31)), n=st.integers(1, 500)
)
def test_properties_round_trip_working_day_monotone(start: date, n: int) -> None:
    day, assumed = OFFICIAL.add_working_days(start, n)
    assert day > start
    assert OFFICIAL.is_working_day(day)
    assert OFFICIAL.working_days_between(start, day) == (n, assumed)
    assert OFFICIAL.working_days_between(start, day - timedelta(days=1))[0] == n - 1
    nxt, _ = OFFICIAL.add_working_days(start, n + 1)
    assert nxt > day
    assert OFFICIAL.last_working_day_on_or_before(nxt - timedelta(days=1)) == day


@given(o=st.integers(1, date.max.toordinal()))
def test_year_of_ordinal(o: int) -> None:
    assert calendar_module._year_of(o) == date.fromordinal(o).year


SHANGHAI = ZoneInfo("Asia/Shanghai")


@given(t=st.integers(day_start(date(1992, 1, 1).toordinal()), 7_258_118_400))  # to 2200
def test_day_helpers_match_zoneinfo(t: int) -> None:
    local = datetime.fromtimestamp(t, SHANGHAI)
    o = day_of(t)
    assert o == local.date().toordinal()
    assert day_start(o) <= t <= day_end(o)
    assert day_end(o) - day_start(o) == 86_399
    assert datetime.fromtimestamp(day_start(o), SHANGHAI).time().isoformat() == "00:00:00"
    assert datetime.fromtimestamp(day_end(o), SHANGHAI).time().isoformat() == "23:59:59"


def test_day_helpers_fixed_points() -> None:
    assert day_of(0) == date(1970, 1, 1).toordinal()
    assert day_of(-8 * 3600) == date(1970, 1, 1).toordinal()
    assert day_of(-8 * 3600 - 1) == date(1969, 12, 31).toordinal()
    instant = datetime(2026, 3, 4, 15, 59, 59, tzinfo=UTC)  # 23:59:59 CST
    assert day_end(date(2026, 3, 4).toordinal()) == int(instant.timestamp())


# --- calendar files ---------------------------------------------------------------------------


def test_doc_example_loads_from_yaml(tmp_path: Path) -> None:
    path = tmp_path / "calendar-2027.yaml"
    path.write_text(_doc_example(), encoding="utf-8")
    (table,) = load_calendar_file(path)
    assert table.year == 2027
    assert D("2027-02-09") in table.holidays and D("2027-09-15") in table.holidays
    assert D("2027-10-09") in table.workdays
    assert table.source.startswith(f"{path}: 国务院办公厅")


def test_json_file_loads(tmp_path: Path) -> None:
    path = tmp_path / "cal.json"
    path.write_text(
        '{"years": [{"year": 2028, "holidays": ["2028-01-01", {"from": "2028-01-25",'
        ' "to": "2028-01-31"}], "workdays": ["2028-02-05"]},'
        ' {"year": 2029, "holidays": ["2029-01-01"]}]}',
        encoding="utf-8",
    )
    t2028, t2029 = load_calendar_file(str(path))
    assert len(t2028.holidays) == 8 and t2028.workdays == {D("2028-02-05")}
    assert t2029.source == str(path) and t2029.workdays == frozenset()
    cal = WorkCalendar.from_years([t2028, t2029])
    assert cal.add_working_days(D("2028-01-24"), 1) == (D("2028-02-01"), False)


GOOD_ENTRY = "  - year: 2027\n    holidays: [2027-01-01]\n"

BAD_FILES: list[tuple[str, str, str]] = [
    (
        "workday on a Monday",
        "years:\n  - year: 2027\n    holidays: [2027-01-01]\n"
        "    workdays: [2027-02-20, 2027-02-15]\n",
        "years[0] (2027): workdays[1]: 2027-02-15 is a Monday, not a weekend day",
    ),
    (
        "date outside the entry's year",
        "years:\n" + GOOD_ENTRY + "  - year: 2028\n    holidays: [2027-12-31]\n",
        "years[1] (2028): holidays[0]: 2027-12-31 is not in 2028",
    ),
    (
        "range end outside the year",
        "years:\n  - year: 2027\n    holidays:\n      - {from: 2027-12-31, to: 2028-01-01}\n",
        "years[0] (2027): holidays[0].to: 2028-01-01 is not in 2027",
    ),
    (
        "reversed range",
        "years:\n  - year: 2027\n    holidays:\n      - 2027-01-01\n"
        "      - {from: 2027-02-13, to: 2027-02-05}\n",
        "years[0] (2027): holidays[1]: from 2027-02-13 is after to 2027-02-05",
    ),
    (
        "range without to",
        "years:\n  - year: 2027\n    holidays:\n      - {from: 2027-02-05, name: 春节}\n",
        "years[0] (2027): holidays[0].to: expected a date (YYYY-MM-DD), got None",
    ),
    (
        "holiday and workday at once",
        "years:\n  - year: 2027\n    holidays:\n      - {from: 2027-02-05, to: 2027-02-13}\n"
        "    workdays: [2027-02-06]\n",
        "years[0] (2027): workdays[0]: 2027-02-06 is also listed in holidays[0]",
    ),
    (
        "duplicate year",
        "years:\n" + GOOD_ENTRY + GOOD_ENTRY,
        "years[1] (2027): year 2027 is already given in years[0]",
    ),
    (
        "unknown entry key",
        "years:\n" + GOOD_ENTRY + "    holiday: [2027-01-02]\n",
        "years[0] (2027): unknown key 'holiday'",
    ),
    (
        "unknown range key",
        "years:\n  - year: 2027\n    holidays:\n      - {from: 2027-02-05, until: 2027-02-13}\n",
        "years[0] (2027): holidays[0]: unknown key 'until'",
    ),
    ("unknown top-level key", "year: 2027\n", "unknown key 'year'"),
    ("not a mapping", "- 2027-01-01\n", "expected a mapping with a 'years' list, got list"),
    ("empty file", "", "expected a mapping with a 'years' list, got nothing"),
    ("years not a list", "years: 2027\n", "'years' must be a list, got int"),
    ("entry not a mapping", "years: [2027]\n", "years[0]: expected a mapping, got int"),
    (
        "year not an integer",
        "years:\n  - year: '2027'\n    holidays: [2027-01-01]\n",
        "years[0]: year: expected an integer year, got '2027'",
    ),
    (
        "year out of range",
        "years:\n  - year: 99999\n    holidays: []\n",
        "years[0]: year: 99999 is outside 1900-2200",
    ),
    ("holidays missing", "years:\n  - year: 2027\n", "years[0] (2027): holidays: missing"),
    (
        "holidays not a list",
        "years:\n  - year: 2027\n    holidays: 2027-01-01\n",
        "years[0] (2027): holidays: expected a list, got date",
    ),
    (
        "not a date",
        "years:\n  - year: 2027\n    holidays: ['2027-02-30']\n",
        "years[0] (2027): holidays[0]: '2027-02-30' is not a date (YYYY-MM-DD)",
    ),
    (
        "a time instead of a date",
        "years:\n  - year: 2027\n    holidays: [2027-01-01 10:00:00]\n",
        "years[0] (2027): holidays[0]: 2027-01-01 10:00:00 has a time",
    ),
    (
        "source not a string",
        "years:\n" + GOOD_ENTRY + "    source: [a]\n",
        "years[0] (2027): source: expected a string, got ['a']",
    ),
    ("invalid YAML", "years: [\n", "not valid YAML/JSON"),
]


@pytest.mark.parametrize(
    ("text", "expected"), [c[1:] for c in BAD_FILES], ids=[c[0] for c in BAD_FILES]
)
def test_bad_files_name_file_entry_and_field(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "cal.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(CalendarFileError) as info:
        load_calendar_file(path)
    assert str(info.value).startswith(f"{path}: {expected}")
    assert isinstance(info.value, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(CalendarFileError, match="cannot read"):
        load_calendar_file(tmp_path / "absent.yaml")
