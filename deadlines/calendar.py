"""Official Chinese working days and the Asia/Shanghai day arithmetic of deadlines.

Counting rule (民法典 Art. 201; docs/calendar.md): a period of N working days (WD) starts on the
day **after** the start date, whatever kind of day the start date is, and ends at the end of the
Nth official working day. A working day is a Monday–Friday that is not a statutory holiday, or a
make-up working day (调休) that falls on a Saturday or Sunday, as set each year by the State
Council notice.

Holiday tables come from the ``chinese_calendar`` package (2004–2026) and from files loaded by
operators (:mod:`config.calendar_files`). For a year without a table the calendar *assumes*
weekends off plus the fixed-date statutory holidays (Jan 1, May 1–2, Oct 1–3) and says so: every
computation returns an ``assumed`` flag.

This module is pure: no I/O, no wall clock. The hot path works on proleptic Gregorian ordinals
(``date.toordinal()``) and never creates date objects.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import chinese_calendar
import chinese_calendar.constants

__all__ = [
    "ASSUMED_FIXED_HOLIDAYS",
    "CST_OFFSET_SECONDS",
    "CalendarYear",
    "WorkCalendar",
    "day_end",
    "day_of",
    "day_start",
    "official_years",
]

CST_OFFSET_SECONDS = 8 * 3600  # China Standard Time, fixed UTC+8 (no DST since 1991)
SECONDS_PER_DAY = 86_400
EPOCH_ORDINAL = 719_163  # date(1970, 1, 1).toordinal()

#: (month, day) of the statutory holidays with fixed Gregorian dates (全国年节及纪念日放假办法,
#: 2025 revision). Assumed for years without a table; lunar holidays and make-up days are not.
ASSUMED_FIXED_HOLIDAYS: tuple[tuple[int, int], ...] = (
    (1, 1),
    (5, 1),
    (5, 2),
    (10, 1),
    (10, 2),
    (10, 3),
)

_MEMO_LIMIT = 100_000
_FINGERPRINT_VERSION = b"govclock-calendar-v1"  # bump if the assumption rule changes
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


# --- Asia/Shanghai day arithmetic (integer seconds since the Unix epoch) ---------------------


def day_of(epoch_seconds: int) -> int:
    """Ordinal of the Asia/Shanghai date that contains the UTC instant ``epoch_seconds``."""
    return (epoch_seconds + CST_OFFSET_SECONDS) // SECONDS_PER_DAY + EPOCH_ORDINAL


def day_start(ordinal: int) -> int:
    """Epoch seconds of 00:00:00 Asia/Shanghai on the day ``ordinal``."""
    return (ordinal - EPOCH_ORDINAL) * SECONDS_PER_DAY - CST_OFFSET_SECONDS


def day_end(ordinal: int) -> int:
    """Epoch seconds of 23:59:59 Asia/Shanghai on the day ``ordinal``.

    This is the inclusive end of the day: the deadline instant of a window that ends that day.
    """
    return day_start(ordinal) + SECONDS_PER_DAY - 1


def _is_weekend(ordinal: int) -> bool:
    # Ordinal 1 (0001-01-01) is a Monday, so ordinal % 7 is 6 on Saturdays and 0 on Sundays.
    return ordinal % 7 in (0, 6)


def _year_of(ordinal: int) -> int:
    """Gregorian year of an ordinal, by integer arithmetic (the algorithm of CPython's date)."""
    n400, n = divmod(ordinal - 1, 146_097)
    n100, n = divmod(n, 36_524)
    n4, n = divmod(n, 1_461)
    n1 = n // 365
    year = n400 * 400 + n100 * 100 + n4 * 4 + n1 + 1
    if n1 == 4 or n100 == 4:  # the last day (Dec 31) of a leap year / a 400-year cycle
        year -= 1
    return year


# --- tables ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CalendarYear:
    """The official holiday table of one year.

    ``holidays`` are statutory rest days that would otherwise be working days (weekend days of a
    break may be listed too; that is harmless). ``workdays`` are the make-up working days (调休),
    which must fall on a Saturday or Sunday. ``source`` says where the table came from.
    """

    year: int
    holidays: frozenset[date]
    workdays: frozenset[date]
    source: str

    def __post_init__(self) -> None:
        for field, days in (("holidays", self.holidays), ("workdays", self.workdays)):
            for day in days:
                if day.year != self.year:
                    raise ValueError(f"{self.source}: {field}: {day} is not in {self.year}")
        for day in self.workdays:
            if day.weekday() < 5:
                raise ValueError(
                    f"{self.source}: workdays: {day} is a {_WEEKDAY_NAMES[day.weekday()]}, "
                    "not a weekend day"
                )
        both = self.holidays & self.workdays
        if both:
            raise ValueError(f"{self.source}: {min(both)} is both a holiday and a workday")


def official_years() -> list[CalendarYear]:
    """The tables shipped in the ``chinese_calendar`` package, one per year it covers."""
    holidays: Mapping[date, str] = chinese_calendar.constants.holidays
    workdays: Mapping[date, str] = chinese_calendar.constants.workdays
    source = f"chinese-calendar {chinese_calendar.__version__}"
    first, last = min(holidays).year, max(holidays).year
    return [
        CalendarYear(
            year=year,
            holidays=frozenset(d for d in holidays if d.year == year),
            workdays=frozenset(d for d in workdays if d.year == year),
            source=source,
        )
        for year in range(first, last + 1)
    ]


def _build_block(year: int, table: CalendarYear | None) -> list[int]:
    """Sorted ordinals of the working days of ``year`` (assumed rule when ``table`` is None)."""
    first = date(year, 1, 1).toordinal()
    last = date(year, 12, 31).toordinal()
    if table is None:
        rest = {date(year, m, d).toordinal() for m, d in ASSUMED_FIXED_HOLIDAYS}
        extra: set[int] = set()
    else:
        rest = {d.toordinal() for d in table.holidays}
        extra = {d.toordinal() for d in table.workdays}
    return [
        o for o in range(first, last + 1) if o in extra or (not _is_weekend(o) and o not in rest)
    ]


def _by_year(years: Iterable[CalendarYear]) -> dict[int, CalendarYear]:
    result: dict[int, CalendarYear] = {}
    for table in years:
        if table.year in result:
            raise ValueError(f"year {table.year} given twice ({table.source})")
        result[table.year] = table
    return result


class WorkCalendar:
    """Official working days: the tables of the known years, the assumed rule for the others.

    Instances are immutable in meaning (the per-year blocks and the memo are caches only), so one
    instance can be shared; :meth:`with_years` returns a new calendar.
    """

    __slots__ = ("_blocks", "_fingerprint", "_memo", "_years")

    def __init__(self, years: Mapping[int, CalendarYear]) -> None:
        """Prefer :meth:`official`, :meth:`from_years` and :meth:`with_years`."""
        self._years: dict[int, CalendarYear] = dict(years)
        self._blocks: dict[int, list[int]] = {}
        self._memo: dict[tuple[int, int], tuple[int, bool]] = {}
        self._fingerprint = _fingerprint(self._years)

    @classmethod
    def official(cls) -> WorkCalendar:
        """The calendar of the ``chinese_calendar`` data (2004–2026); one shared instance."""
        return _official_calendar()

    @classmethod
    def from_years(cls, years: Iterable[CalendarYear]) -> WorkCalendar:
        """A calendar with exactly these tables (a year given twice is a ValueError)."""
        return cls(_by_year(years))

    def with_years(self, years: Iterable[CalendarYear]) -> WorkCalendar:
        """A new calendar: this one's tables, with ``years`` replacing the same years' tables."""
        merged = dict(self._years)
        merged.update(_by_year(years))
        return WorkCalendar(merged)

    @property
    def known_years(self) -> frozenset[int]:
        """Years with a table (official or loaded); other years use the assumed rule."""
        return frozenset(self._years)

    def is_known(self, year: int) -> bool:
        return year in self._years

    @property
    def fingerprint(self) -> str:
        """Short stable hash of the tables (years, holidays, workdays): which calendar counted."""
        return self._fingerprint

    def __repr__(self) -> str:
        years = sorted(self._years)
        span = f"{years[0]}-{years[-1]}" if years else "none"
        return f"WorkCalendar(known={span}, n={len(years)}, fingerprint={self._fingerprint})"

    # --- blocks ---

    def _block(self, year: int) -> list[int]:
        block = self._blocks.get(year)
        if block is None:
            # Built at most once per year and instance (a race builds identical lists).
            block = self._blocks.setdefault(year, _build_block(year, self._years.get(year)))
        return block

    # --- hot path on ordinals ---

    def add_working_days_ord(self, start: int, n: int) -> tuple[int, bool]:
        """The Nth working day strictly after ``start`` (ordinals), and whether it was assumed.

        The start day is never counted. ``assumed`` is True iff a day in (start, result] lies in
        a year without a table. ``n == 0`` returns ``start`` and whether its year is unknown.
        """
        key = (start, n)
        hit = self._memo.get(key)
        if hit is not None:
            return hit
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        if n == 0:
            result = (start, _year_of(start) not in self._years)
        else:
            year = _year_of(start + 1)
            block = self._block(year)
            assumed = year not in self._years
            i = bisect_right(block, start) + n - 1
            while i >= len(block):
                i -= len(block)
                year += 1
                block = self._block(year)
                assumed = assumed or year not in self._years
            result = (block[i], assumed)
        if len(self._memo) >= _MEMO_LIMIT:
            self._memo.clear()
        self._memo[key] = result
        return result

    def working_days_between_ord(self, after: int, through: int) -> tuple[int, bool]:
        """Number of working days d with ``after < d <= through`` (ordinals), and the flag.

        ``assumed`` is True iff a day of the span lies in a year without a table; an empty span
        (``through <= after``) gives ``(0, False)``.
        """
        if through <= after:
            return 0, False
        count = 0
        assumed = False
        for year in range(_year_of(after + 1), _year_of(through) + 1):
            block = self._block(year)
            count += bisect_right(block, through) - bisect_right(block, after)
            assumed = assumed or year not in self._years
        return count, assumed

    # --- date wrappers ---

    def is_working_day(self, day: date) -> bool:
        block = self._block(day.year)
        o = day.toordinal()
        i = bisect_left(block, o)
        return i < len(block) and block[i] == o

    def add_working_days(self, start: date, n: int) -> tuple[date, bool]:
        """The Nth working day strictly after ``start``; see :meth:`add_working_days_ord`."""
        o, assumed = self.add_working_days_ord(start.toordinal(), n)
        return date.fromordinal(o), assumed

    def working_days_between(self, after: date, through: date) -> tuple[int, bool]:
        """Working days d with ``after < d <= through``; see :meth:`working_days_between_ord`."""
        return self.working_days_between_ord(after.toordinal(), through.toordinal())

    def last_working_day_on_or_before(self, day: date) -> date:
        year = day.year
        block = self._block(year)
        i = bisect_right(block, day.toordinal()) - 1
        while i < 0:
            year -= 1
            block = self._block(year)
            i = len(block) - 1
        return date.fromordinal(block[i])


def _fingerprint(years: Mapping[int, CalendarYear]) -> str:
    h = hashlib.sha256(_FINGERPRINT_VERSION)
    for year in sorted(years):
        table = years[year]
        h.update(f"|{year}|H".encode())
        h.update(",".join(d.isoformat() for d in sorted(table.holidays)).encode())
        h.update(b"|W")
        h.update(",".join(d.isoformat() for d in sorted(table.workdays)).encode())
    return h.hexdigest()[:12]


@lru_cache(maxsize=1)
def _official_calendar() -> WorkCalendar:
    return WorkCalendar.from_years(official_years())
