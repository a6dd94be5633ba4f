"""Plain-text tables for people: the replay report and the rule listings."""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from typing import Any

from deadlines.rules import Rule, RuleBook

STATUS_MARK = {
    "met": "met",
    "late": "LATE",
    "missed": "MISSED",
    "unverifiable": "unverifiable",
    "pending": "pending",
    "paused": "paused",
    "cancelled": "cancelled",
}


def width(text: str) -> int:
    """Terminal columns: CJK characters take two."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    cols = [max([width(h)] + [width(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(
            c + " " * (w - width(c)) for c, w in zip(cells, cols, strict=True)
        ).rstrip()

    out = [line(headers), line(["-" * w for w in cols])]
    out += [line(r) for r in rows]
    return "\n".join(out) + "\n"


def _short(ts: str | None) -> str:
    """``2026-03-04T23:59:59+08:00`` -> ``2026-03-04 23:59``."""
    return "" if ts is None else ts[:16].replace("T", " ")


def _rate(value: float | None) -> str:
    return "—" if value is None else f"{value:.0%}"


def render_report(report: dict[str, Any]) -> str:
    parts = [f"govclock report as of {_short(report['as_of'])} (Asia/Shanghai)\n"]
    ev = report["events"]
    parts.append(
        f"events: {ev['applied']} applied, {ev['duplicates']} duplicates ignored, "
        f"{ev['rejected']} rejected, {ev['after_as_of']} after as-of\n\n"
    )
    rows = [
        [
            STATUS_MARK[o["status"]] + ("*" if o["calendar_assumed"] else ""),
            o["rule_id"],
            o["subject_id"],
            o["unit"],
            _short(o["opened_at"]),
            _short(o["due_at"]),
            _short(o["fulfilled_at"])[: 10 if o["fulfilled_date_only"] else 16],
            o["fulfilled_by"] or "",
        ]
        for o in report["obligations"]
    ]
    parts.append(
        table(["status", "rule", "subject", "unit", "opened", "due", "fulfilled", "by"], rows)
    )
    if any(o["calendar_assumed"] for o in report["obligations"]):
        parts.append("* deadline rests on an assumed holiday calendar (year not yet published)\n")
    for title, key in (("unit", "by_unit"), ("rule", "by_rule")):
        groups = report["on_time"][key]
        rows = [
            [
                name,
                str(g["met"]),
                str(g["late"]),
                str(g["missed"]),
                str(g["unverifiable"]),
                str(g["pending"] + g["paused"]),
                _rate(g["on_time_rate"]),
            ]
            for name, g in groups.items()
        ]
        parts.append(f"\non-time by {title}\n")
        parts.append(table([title, "met", "late", "missed", "unverif.", "open", "on-time"], rows))
    overall = report["on_time"]["overall"]
    parts.append(
        f"\noverall on-time rate: {_rate(overall['on_time_rate'])} "
        f"({overall['met']} met of {overall['decided']} decided)\n"
    )
    for r in report.get("rejected", []):
        parts.append(f"rejected line {r['line']}: {r['reason']}\n")
    return "".join(parts)


def _window(rule: Rule) -> str:
    w = rule.window
    if w.hours is not None:
        return f"{w.hours:g} h"
    if w.working_days is not None:
        return f"{w.working_days} WD"
    if w.same_day:
        return "same day"
    extra = ", ".join(f"{k} {v}" for k, v in w.by_unit_kind.items())
    return f"by {w.fixed_date}" + (f" ({extra})" if extra else "")


def _period(rule: Rule) -> str:
    eff = rule.spec.effective
    return f"{eff.from_}…{eff.until or ''}"


def render_rules(book: RuleBook, pack: str | None = None) -> str:
    packs = [book.packs[pack]] if pack else [book.packs[p] for p in sorted(book.packs)]
    out = []
    for p in packs:
        default = " (default)" if p.id == book.default_pack else ""
        out.append(f"pack {p.id}{default}: {p.title}\n")
        rows = [
            [
                r.id,
                _window(r),
                _period(r),
                ", ".join(sorted(r.events)) or "calendar: yearly",
                r.spec.citations[0].source,
            ]
            for r in p.rules
        ]
        out.append(table(["rule", "window", "effective", "trigger", "source"], rows) + "\n")
    return "".join(out)


def render_rule(versions: Sequence[Rule]) -> str:
    out = []
    for r in versions:
        s = r.spec
        out.append(f"{r.id}  [{r.key}]\n  {s.title}\n")
        out.append(f"  effective: {_period(r)}\n  window: {_window(r)}\n")
        trig = ", ".join(s.trigger.events) or "calendar: yearly (1 January, every unit)"
        out.append(f"  trigger: {trig}\n")
        when = s.trigger.when
        for path, pred in when.all.items():
            out.append(f"    all: {path} {pred.model_dump(by_alias=True, exclude_none=True)}\n")
        for alt in when.any:
            conds = "; ".join(
                f"{k} {v.model_dump(by_alias=True, exclude_none=True)}" for k, v in alt.items()
            )
            out.append(f"    any: {conds}\n")
        out.append(
            f"  evidence: {', '.join(s.evidence.kinds)} with refs.{s.evidence.ref}"
            if s.evidence.ref != "unit"
            else f"  evidence: {', '.join(s.evidence.kinds)} from the same unit"
        )
        out.append("\n")
        for w in s.warnings:
            out.append(f"  warn: {w.model_dump(exclude_none=True)}\n")
        for step in s.clock:
            out.append(f"  clock: {step.event} -> {step.do}\n")
        out.append("  sources:\n")
        for c in s.citations:
            sec = f", {c.section}" if c.section else ""
            out.append(f"    - {c.source}{sec}\n")
            if c.quote:
                out.append(f"      “{c.quote.strip()}”\n")
        if s.notes:
            out.append(f"  notes: {s.notes.strip()}\n")
        out.append("\n")
    return "".join(out)
