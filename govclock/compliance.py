"""``govclock report``: on-time rates for a period from the archive plus what is still open.

Which obligations: those due in ``[from, to)`` (Asia/Shanghai dates; ``to`` exclusive),
optionally of one unit and one rule. Settled ones come from the archive (docs/archive.md);
the others are still in the live monitor's hot state and come from its API
(``GET /v1/obligations``, paged). Together they are every obligation the history opened, so
the rates equal those of ``govclock replay`` over the same history (tests/test_compliance.py).

Formats: ``table`` (the terminal), ``json``, and ``csv`` for Excel and WPS: UTF-8 with a byte
order mark, Chinese headers (``--headers en`` for English), one section of rates per unit
and per rule, then the late and missed obligations with the reason for each.
"""

from __future__ import annotations

import csv
import io
import json
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any

from archive.records import epoch
from archive.store import Archive, page_key
from config.tables import table
from deadlines.calendar import day_start
from deadlines.report import rates_of_views

#: Rows per archive page and per API page.
PAGE = 2000
STATUS_ZH = {
    "met": "按时",
    "late": "逾期办结",
    "missed": "超时未办",
    "unverifiable": "无法核实",
    "cancelled": "已撤销",
    "pending": "办理中",
    "paused": "已中止",
}
RATE_HEADERS = {
    "zh": ["范围", "名称", "应判定", "按时", "逾期办结", "超时未办", "无法核实", "按时率"],
    "en": ["scope", "name", "decided", "met", "late", "missed", "unverifiable", "on_time_rate"],
}
LIST_HEADERS = {
    "zh": ["事项", "单位", "规则", "截止时间", "状态", "办结时间", "依据", "原因", "来源"],
    "en": [
        "obligation",
        "unit",
        "rule",
        "due",
        "status",
        "fulfilled",
        "evidence",
        "reason",
        "source",
    ],
}


@dataclass(frozen=True)
class Period:
    """Obligations due in ``[start, end)`` (epoch seconds), of ``unit`` and ``rule`` if set."""

    start: int
    end: int
    unit: str | None = None
    rule: str | None = None

    @classmethod
    def of_dates(cls, start: str, end: str, unit: str | None, rule: str | None) -> Period:
        """``--from``/``--to`` as dates (00:00 Asia/Shanghai); ``to`` is exclusive."""
        a, b = (day_start(date.fromisoformat(d).toordinal()) for d in (start, end))
        if b <= a:
            raise ValueError(f"--to {end} must be after --from {start}")
        return cls(a, b, unit, rule)

    def keeps(self, view: dict[str, Any]) -> bool:
        due = epoch(str(view["due_at"]), "due_at")
        return (
            self.start <= due < self.end
            and (self.unit is None or view["unit"] == self.unit)
            and (self.rule is None or view["rule_id"] == self.rule)
        )


def archived_views(archive: Archive, period: Period) -> Iterator[dict[str, Any]]:
    """Every archived obligation of the period (newest version each), by due time."""
    after: tuple[int, str] | None = None
    while True:
        rows = archive.query(
            due_from=period.start,
            due_to=period.end,
            unit=period.unit,
            rule_id=period.rule,
            limit=PAGE,
            after=after,
        )
        yield from rows
        if len(rows) < PAGE:
            return
        after = page_key(rows[-1])


Fetch = Callable[[str], Any]


def http_json(url: str) -> Any:
    """GET ``url`` and decode its JSON (the monitor on the operator's own network)."""
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def open_views(monitor: str, period: Period, fetch: Fetch = http_json) -> Iterator[dict[str, Any]]:
    """The obligations of the period still in the monitor's hot state (every page)."""
    query: dict[str, str] = {"limit": str(PAGE), "due_before": str(period.end)}
    if period.unit:
        query["unit"] = period.unit
    if period.rule:
        query["rule"] = period.rule
    cursor: str | None = None
    while True:
        params = {**query, **({"cursor": cursor} if cursor else {})}
        page = fetch(f"{monitor.rstrip('/')}/v1/obligations?{urllib.parse.urlencode(params)}")
        if page.get("partial"):
            missing = page.get("missing_partitions")
            raise RuntimeError(f"the monitor did not answer for partitions {missing}; retry")
        yield from (v for v in page["obligations"] if period.keeps(v))
        cursor = page.get("next")
        if not cursor:
            return


def build(views: Iterable[dict[str, Any]], period: Period) -> dict[str, Any]:
    """The report of the period: rates, and the late and missed obligations with reasons."""
    seen: dict[str, dict[str, Any]] = {}
    for view in views:
        if period.keeps(view):
            seen.setdefault(str(view["id"]), view)  # open state first: it is the newer
    obligations = sorted(seen.values(), key=lambda v: (epoch(str(v["due_at"])), str(v["id"])))
    return {
        "period": {
            "from": period.start,
            "to": period.end,
            "unit": period.unit,
            "rule": period.rule,
        },
        "on_time": rates_of_views(obligations),
        "exceptions": [
            {**_brief(v), "reason": reason(v)}
            for v in obligations
            if v["status"] in ("late", "missed")
        ],
        "obligations": len(obligations),
        "archived": sum(1 for v in obligations if v.get("archived")),
    }


def _brief(view: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": view["id"],
        "unit": view["unit"],
        "rule_id": view["rule_id"],
        "due_at": view["due_at"],
        "status": view["status"],
        "fulfilled_at": view.get("fulfilled_at"),
        "fulfilled_by": view.get("fulfilled_by"),
        "source": "archive" if view.get("archived") else "open",
    }


def reason(view: dict[str, Any]) -> str:
    """Why an obligation counts as late or missed, in the terms of its own timeline."""
    if view["status"] == "late":
        return (
            f"evidence {view.get('fulfilled_by')} published {view.get('fulfilled_at')}, "
            f"after the deadline {view['due_at']}"
        )
    breached = [e for e in view.get("timeline", ()) if e.get("kind") == "breached"]
    since = breached[-1]["at"] if breached else view["due_at"]
    return f"no evidence by the deadline {view['due_at']} (breached {since})"


def render(report: dict[str, Any], fmt: str, headers: str = "zh") -> str:
    if fmt == "json":
        return json.dumps(report, ensure_ascii=False, indent=2) + "\n"
    rates = _rate_rows(report["on_time"])
    exceptions = [_exception_row(e, headers) for e in report["exceptions"]]
    if fmt == "csv":
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\r\n")
        writer.writerow(RATE_HEADERS[headers])
        writer.writerows(rates)
        writer.writerow([])
        writer.writerow(LIST_HEADERS[headers])
        writer.writerows(exceptions)
        return "\ufeff" + out.getvalue()  # the BOM: Excel and WPS then read UTF-8
    return table(RATE_HEADERS["en"], rates) + "\n" + table(LIST_HEADERS["en"], exceptions)


def _rate_rows(on_time: dict[str, Any]) -> list[list[str]]:
    rows = []
    for scope, groups in (
        ("all", {"all": on_time["overall"]}),
        ("unit", on_time["by_unit"]),
        ("rule", on_time["by_rule"]),
    ):
        for name, g in groups.items():
            rate = g["on_time_rate"]
            rows.append(
                [
                    scope,
                    name,
                    str(g["decided"]),
                    str(g["met"]),
                    str(g["late"]),
                    str(g["missed"]),
                    str(g["unverifiable"]),
                    "" if rate is None else f"{rate:.4f}",
                ]
            )
    return rows


def _exception_row(e: dict[str, Any], headers: str) -> list[str]:
    status = STATUS_ZH.get(e["status"], e["status"]) if headers == "zh" else e["status"]
    return [
        e["id"],
        e["unit"],
        e["rule_id"],
        e["due_at"],
        status,
        e["fulfilled_at"] or "",
        e["fulfilled_by"] or "",
        e["reason"],
        e["source"],
    ]
