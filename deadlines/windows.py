"""An obligation's window: when it ends, and whether the evidence came within it.

A window is ``hours`` long, a number of ``working_days`` (on the holiday calendar), the same
day, or ends on a ``fixed_date``; day windows end at 23:59:59 Asia/Shanghai. Clock events
pause, resume, restart or extend it, in time order (:func:`reschedule`). :func:`judge` decides
fulfilment from the publications the subject has seen: met if published by the deadline, late
if after it, unverifiable if it carries only a date and that day straddles the deadline.

No I/O: these functions update the obligation in place from its rule, its subject, the
calendar and the ledger's clock; the ledger calls them whenever a trigger, a clock event or a
publication arrives, or the holiday table changes.
"""

from __future__ import annotations

from datetime import date

from deadlines.calendar import WorkCalendar, day_end, day_of
from deadlines.obligations import (
    CANCELLED,
    EXTENDED,
    FULFILLED,
    LATE,
    MET,
    MISSED,
    OPEN_STATUSES,
    PAUSED,
    PAUSED_FX,
    PENDING,
    REJECTED,
    RESTARTED,
    RESUMED,
    UNIT_REF,
    UNVERIFIABLE,
    ClockEvent,
    Effect,
    Obligation,
    Subject,
)


def window_end(ob: Obligation, start: int, calendar: WorkCalendar) -> tuple[int, bool]:
    """The deadline of a window starting at ``start``, and whether it rests on an
    assumed (not yet published) holiday calendar."""
    window = ob.rule.window
    if window.hours is not None:
        return start + int(window.hours * 3600), False
    if window.working_days is not None:
        day, assumed = calendar.add_working_days_ord(day_of(start), window.working_days)
        return day_end(day), assumed
    if window.same_day:
        return day_end(day_of(start)), False
    mmdd = window.by_unit_kind.get(ob.unit_kind, window.fixed_date)  # type: ignore[call-overload]
    assert mmdd is not None
    year = date.fromordinal(day_of(start)).year
    month, day_ = (int(x) for x in mmdd.split("-"))
    return day_end(date(year, month, day_).toordinal()), False


def add_working_days(due: int, n: int, calendar: WorkCalendar) -> tuple[int, bool]:
    day, assumed = calendar.add_working_days_ord(day_of(due), n)
    return day_end(day), assumed


def reschedule(
    subject: Subject, ob: Obligation, calendar: WorkCalendar, clock: int | None
) -> list[tuple[ClockEvent, str, str]]:
    """Recompute start, due and pause state from the trigger and every clock event,
    in time order. Returns, per clock event, the action taken and a note."""
    start = ob.opened_at
    due, assumed = window_end(ob, start, calendar)
    if not subject.clock or not ob.rule.clock:  # nothing can move this clock
        settle(ob, start, due, assumed, paused=False, clock=clock)
        return []
    paused_since: int | None = None
    extensions = 0
    day_window = ob.rule.window.unit in ("working_days",)
    log: list[tuple[ClockEvent, str, str]] = []
    steps = sorted(s for s in subject.clock if s[2] in ob.rule.clock and s[1] != ob.opened_by)
    for step in steps:
        at, _eid, etype, _date_only, working_days = step
        spec = ob.rule.clock[etype]
        if spec.do == "pause":
            if paused_since is None:
                paused_since = at
                log.append((step, PAUSED_FX, "clock stopped"))
            else:
                log.append((step, REJECTED, "already paused"))
        elif spec.do == "resume":
            if paused_since is None:
                log.append((step, REJECTED, "not paused"))
                continue
            if day_window:
                n, a = calendar.working_days_between_ord(day_of(paused_since), day_of(at))
                if n:
                    due, a2 = add_working_days(due, n, calendar)
                    assumed = assumed or a2
                assumed = assumed or a
                note = f"+{n} working days paused"
            else:
                due += at - paused_since
                note = f"+{at - paused_since} s paused"
            paused_since = None
            log.append((step, RESUMED, note))
        elif spec.do == "restart":
            start = at
            due, assumed = window_end(ob, start, calendar)
            paused_since = None
            extensions = 0
            log.append((step, RESTARTED, "window restarts from this day"))
        else:  # extend
            if spec.max_times is not None and extensions >= spec.max_times:
                log.append((step, REJECTED, f"only {spec.max_times} extension(s) allowed"))
                continue
            if spec.max_working_days is not None and working_days > spec.max_working_days:
                log.append((step, REJECTED, f"at most {spec.max_working_days} working days"))
                continue
            extensions += 1
            due, a = add_working_days(due, working_days, calendar)
            assumed = assumed or a
            log.append((step, EXTENDED, f"+{working_days} working days"))
    settle(ob, start, due, assumed, paused=paused_since is not None, clock=clock)
    return log


def settle(
    ob: Obligation, start: int, due: int, assumed: bool, paused: bool, clock: int | None
) -> None:
    """Store a recomputed window and the open status that follows from it."""
    ob.start, ob.due_at, ob.calendar_assumed = start, due, assumed
    if ob.warned_until < start:
        ob.warned_until = start
    if ob.status in OPEN_STATUSES:
        if paused:
            ob.status = PAUSED
        elif ob.status != MISSED or clock is None or due >= clock:
            ob.status = PENDING  # a missed one stays missed: its breach was reported


def judge(subject: Subject, ob: Obligation, fx: list[Effect]) -> None:
    """Decide fulfilment from every matching publication the subject has seen."""
    if ob.status == CANCELLED or not subject.evidence:
        return
    best: tuple[int, int, str, bool] | None = None  # (rank, at, event_id, date_only)
    due = ob.due_at
    only_after_start = ob.rule.ref == UNIT_REF
    for at, eid, kind, date_only, _url in subject.evidence:
        if kind not in ob.rule.evidence_kinds:
            continue
        if only_after_start and at < ob.start:
            continue  # last year's report does not fulfil this year's duty
        if date_only:
            end = at + 86399
            rank = 0 if end <= due else (2 if at > due else 1)
        else:
            rank = 0 if at <= due else 2
        cand = (rank, at, eid, date_only)
        if best is None or cand < best:
            best = cand
    if best is None:
        return
    status = (MET, UNVERIFIABLE, LATE)[best[0]]
    if status == ob.status and ob.fulfilled_by == best[2]:
        return
    ob.status, ob.fulfilled_at, ob.fulfilled_by = status, best[1], best[2]
    ob.fulfilled_date_only = best[3]
    if best[0] == 1:
        detail = "published with a date only; cannot tell if within the window"
    else:
        detail = "published with a date only" if best[3] else ""
    ob.log(best[1], FULFILLED[status], best[2], detail)
    fx.append(ob.effect(FULFILLED[status], best[1], best[2], detail))
