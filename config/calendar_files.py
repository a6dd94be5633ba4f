"""Holiday tables loaded from operator files (YAML or JSON), for years the package lacks.

Format (docs/calendar.md)::

    years:
      - year: 2027
        source: "国务院办公厅关于2027年部分节假日安排的通知 (国办发明电〔2026〕X号)"
        holidays:            # rest days; single dates or inclusive ranges
          - 2027-01-01
          - {from: 2027-02-05, to: 2027-02-11, name: 春节}
        workdays:            # make-up working days on weekends
          - 2027-02-14

Every error is a :class:`CalendarFileError` whose message names the file, the year entry, the
field and the bad value, e.g.
``cal.yaml: years[0] (2027): workdays[1]: 2027-02-15 is a Monday, not a weekend day``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import date, datetime, timedelta
from pathlib import Path

import yaml

from deadlines.calendar import CalendarYear, WorkCalendar

__all__ = ["CalendarFileError", "load_calendar", "load_calendar_file", "parse_calendar_document"]

MIN_YEAR = 1900
MAX_YEAR = 2200

_TOP_KEYS = frozenset({"years"})
_ENTRY_KEYS = frozenset({"year", "source", "holidays", "workdays"})
_RANGE_KEYS = frozenset({"from", "to", "name"})
_WEEKDAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")


class CalendarFileError(ValueError):
    """A holiday-table file that cannot be used; the message says where and why."""


def load_calendar_file(path: str | Path) -> list[CalendarYear]:
    """Read and validate a holiday-table file (YAML, or JSON, which YAML reads too)."""
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CalendarFileError(f"{name}: cannot read: {exc}") from exc
    try:
        data: object = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CalendarFileError(f"{name}: not valid YAML/JSON: {exc}") from exc
    return parse_calendar_document(data, name)


def parse_calendar_document(data: object, source: str) -> list[CalendarYear]:
    """Validate a parsed document (``{"years": [...]}``) into one :class:`CalendarYear` a year.

    ``source`` names the document in error messages and in each table's ``source``.
    """
    if not isinstance(data, Mapping):
        raise CalendarFileError(
            f"{source}: expected a mapping with a 'years' list, got {_kind(data)}"
        )
    _check_keys(data, _TOP_KEYS, source)
    entries = data.get("years")
    if not isinstance(entries, list):
        raise CalendarFileError(f"{source}: 'years' must be a list, got {_kind(entries)}")
    seen: dict[int, int] = {}
    tables: list[CalendarYear] = []
    for index, entry in enumerate(entries):
        table = _parse_entry(entry, f"{source}: years[{index}]", source)
        if table.year in seen:
            raise CalendarFileError(
                f"{source}: years[{index}] ({table.year}): year {table.year} is already given "
                f"in years[{seen[table.year]}]"
            )
        seen[table.year] = index
        tables.append(table)
    return tables


def _parse_entry(entry: object, where: str, source: str) -> CalendarYear:
    if not isinstance(entry, Mapping):
        raise CalendarFileError(f"{where}: expected a mapping, got {_kind(entry)}")
    year = entry.get("year")
    if not isinstance(year, int) or isinstance(year, bool):
        raise CalendarFileError(f"{where}: year: expected an integer year, got {year!r}")
    if not MIN_YEAR <= year <= MAX_YEAR:
        raise CalendarFileError(f"{where}: year: {year} is outside {MIN_YEAR}-{MAX_YEAR}")
    where = f"{where} ({year})"
    _check_keys(entry, _ENTRY_KEYS, where)

    notice = entry.get("source")
    if notice is not None and not isinstance(notice, str):
        raise CalendarFileError(f"{where}: source: expected a string, got {notice!r}")
    if "holidays" not in entry:
        raise CalendarFileError(f"{where}: holidays: missing (list the rest days of {year})")
    holidays = _parse_days(entry["holidays"], year, where, "holidays")
    workdays = _parse_days(entry.get("workdays", []), year, where, "workdays")

    for day, field in workdays.items():
        if day.weekday() < 5:
            raise CalendarFileError(
                f"{where}: {field}: {day} is a {_WEEKDAY_NAMES[day.weekday()]}, not a weekend day"
            )
        if day in holidays:
            raise CalendarFileError(f"{where}: {field}: {day} is also listed in {holidays[day]}")
    return CalendarYear(
        year=year,
        holidays=frozenset(holidays),
        workdays=frozenset(workdays),
        source=f"{source}: {notice}" if notice else source,
    )


def _parse_days(items: object, year: int, where: str, key: str) -> dict[date, str]:
    """Dates and inclusive ranges of ``entry[key]`` -> {day: the item that listed it first}."""
    if not isinstance(items, list):
        raise CalendarFileError(f"{where}: {key}: expected a list, got {_kind(items)}")
    days: dict[date, str] = {}
    for index, item in enumerate(items):
        label = f"{key}[{index}]"
        field = f"{where}: {label}"
        if isinstance(item, Mapping):
            _check_keys(item, _RANGE_KEYS, field)
            name = item.get("name")
            if name is not None and not isinstance(name, str):
                raise CalendarFileError(f"{field}.name: expected a string, got {name!r}")
            first = _parse_date(item.get("from"), year, f"{field}.from")
            last = _parse_date(item.get("to"), year, f"{field}.to")
            if first > last:
                raise CalendarFileError(f"{field}: from {first} is after to {last}")
            span = [first + timedelta(days=k) for k in range((last - first).days + 1)]
        else:
            span = [_parse_date(item, year, field)]
        for day in span:
            days.setdefault(day, label)
    return days


def _parse_date(value: object, year: int, field: str) -> date:
    if isinstance(value, datetime):  # a subclass of date: reject times explicitly
        raise CalendarFileError(f"{field}: {value} has a time; give a date (YYYY-MM-DD)")
    if isinstance(value, date):
        day = value
    elif isinstance(value, str):
        try:
            day = date.fromisoformat(value.strip())
        except ValueError:
            raise CalendarFileError(f"{field}: {value!r} is not a date (YYYY-MM-DD)") from None
    else:
        raise CalendarFileError(f"{field}: expected a date (YYYY-MM-DD), got {value!r}")
    if day.year != year:
        raise CalendarFileError(f"{field}: {day} is not in {year}")
    return day


def _check_keys(mapping: Mapping[object, object], allowed: frozenset[str], where: str) -> None:
    unknown = sorted(str(k) for k in mapping if k not in allowed)
    if unknown:
        raise CalendarFileError(
            f"{where}: unknown key {unknown[0]!r} (allowed: {', '.join(sorted(allowed))})"
        )


def _kind(value: object) -> str:
    return "nothing" if value is None else type(value).__name__


def load_calendar(files: Iterable[str | Path]) -> WorkCalendar:
    """The official calendar with the years of ``files`` loaded on top."""
    official = WorkCalendar.official()
    years = [y for f in files for y in load_calendar_file(f)]
    return official.with_years(years) if years else official
