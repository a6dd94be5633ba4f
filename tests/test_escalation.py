"""Escalation as scripted timelines with exact times, driven by the real ledger.

A small test shell plays the runtime: it applies events, and wakes the ledger and every
escalation exactly when they ask (``Ledger.next_due`` / ``next_wake``), so each expected row is
an exact second after the incident, never "within 15 s". People on call come from the roster of
tests/test_roster.py (worked out by hand there).

The policy here (``POLICY_YAML``) repeats every 30 minutes, at most 3 times a rung, and pages
rung 2 after 60 minutes; first_release_5h warns at 2.5 h and at 4 h and is due at 5 h.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from test_roster import ROSTER_YAML, cst

from config.escalation_files import load_escalation, load_policies
from config.packs import load_rulebook
from deadlines.calendar import WorkCalendar
from deadlines.escalation import next_wake, on_ack, on_delivery, on_effect, start, tick
from deadlines.escalation_policy import (
    PolicyBook,
    PolicyError,
    build_policies,
    parse_policies,
    policy_problems,
)
from deadlines.escalation_state import ACK_URL, Action, EscalationState, NoOnCall, Notify
from deadlines.escalation_texts import MAX_TEXT_CHARS, compose, guard_text
from deadlines.ledger import Ledger
from deadlines.obligations import Effect
from deadlines.roster import EMERGENCY_OFFICE, Roster, roster_from_document
from schemas.events import Event, parse_event

RULES = load_rulebook()
CAL = WorkCalendar.official()
ROSTER = roster_from_document(yaml.safe_load(ROSTER_YAML), "roster.yaml")
MIN = 60
HOUR = 3600

POLICY_YAML = """
name: test
short_names: {first_release_5h: 首次权威发布}
default:
  warn: [{unit: owner, level: 1}]
  breach:
    - notify: [{unit: owner, level: 1}, {unit: emergency_office, level: 1}]
    - notify: [{unit: owner, level: 2}]
  channels: [sms, voice]
  repeat_minutes: 30
  max_repeats: 3
  escalate_after_minutes: 60
"""


def policies(text: str = POLICY_YAML, **default: Any) -> PolicyBook:
    data = yaml.safe_load(text)
    data["default"].update(default)
    return build_policies(parse_policies(data, "policy.yaml"), "policy.yaml")


POLICIES = policies()


# --- the test shell ---------------------------------------------------------------------------


def incident(iid: str, at: str, unit: str = "u1", eid: str | None = None) -> Event:
    return parse_event(
        {
            "type": "incident.reported",
            "event_id": eid or f"rep-{iid}",
            "unit": unit,
            "incident_id": iid,
            "occurred_at": at,
            "title": "某化工厂爆炸",
            "severity": "II",
            "deaths": 12,
        }
    )


def release(eid: str, iid: str, at: str, unit: str = "u1") -> Event:
    return parse_event(
        {
            "type": "document.published",
            "event_id": eid,
            "unit": unit,
            "publication_id": eid,
            "published_at": at,
            "kind": "press_release",
            "channel": "portal",
            "url": f"https://gov.example/{eid}",
            "refs": {"incident_id": iid},
        }
    )


class Shell:
    """Ledger + escalation, woken exactly when either asks; records every action with its time."""

    def __init__(self, roster: Roster = ROSTER, book: PolicyBook = POLICIES) -> None:
        self.ledger = Ledger(RULES, CAL)
        self.roster = roster
        self.book = book
        self.states: dict[str, EscalationState] = {}
        self.actions: list[Action] = []

    def _effects(self, fx: Iterable[Effect], now: int) -> None:
        for e in fx:
            state = self.states.get(e.obligation_id)
            if state is None:
                ob = self.ledger.get(e.obligation_id)
                state = start(e, self.book, title=ob.rule.title if ob else None)
            state, acts = on_effect(state, e, self.roster, now)
            self.states[e.obligation_id] = state
            self.actions.extend(acts)

    def advance(self, to: int) -> None:
        while True:
            wakes = [self.ledger.next_due(), *(next_wake(s) for s in self.states.values())]
            due = [w for w in wakes if w is not None and w <= to]
            if not due:
                break
            now = min(due)
            self._effects(self.ledger.tick(now), now)
            for oid, state in list(self.states.items()):
                wake = next_wake(state)
                if wake is not None and wake <= now:
                    state, acts = tick(state, self.roster, now)
                    assert next_wake(state) is None or next_wake(state) > now  # type: ignore[operator]
                    self.states[oid] = state
                    self.actions.extend(acts)
        self._effects(self.ledger.tick(to), to)

    def event(self, event: Event, at: int) -> None:
        self.advance(at)
        self._effects(self.ledger.apply(event), at)

    def ack(self, oid: str, level: int, person: str, at: int) -> None:
        self.advance(at)
        self.states[oid], acts = on_ack(self.states[oid], level, person, at)
        self.actions.extend(acts)

    def delivery(self, key: str, status: str, at: int) -> list[Action]:
        self.advance(at)
        oid = key.split("|")[0]
        self.states[oid], acts = on_delivery(self.states[oid], key, status, at)
        self.actions.extend(acts)
        return acts

    def notes(self, oid: str, what: str) -> list[str]:
        return [d for _, w, d in self.states[oid].log if w == what]


def offset(t: int, base: int) -> str:
    """``+5:00:01`` — seconds after the incident, exact."""
    d = t - base
    return f"+{d // 3600}:{d % 3600 // 60:02d}:{d % 60:02d}"


def rows(actions: Iterable[Action], base: int, oid: str) -> list[tuple[str, ...]]:
    out: list[tuple[str, ...]] = []
    for a in actions:
        if a.obligation_id != oid:
            continue
        if isinstance(a, Notify):
            out.append((offset(a.at, base), a.kind, f"L{a.level}", a.unit, a.person_id, a.channel))
        else:
            out.append((offset(a.at, base), "NO-ON-CALL", f"L{a.level}", a.unit, a.reason))
    return out


def notifies(actions: Iterable[Action], oid: str = "first_release_5h:I1") -> list[Notify]:
    return [a for a in actions if isinstance(a, Notify) and a.obligation_id == oid]


FR = "first_release_5h:I1"
T = cst("2026-03-10T10:00:00")  # a Tuesday: li holds u1 level 1, wang level 2, eo-b the office
T_TEXT = "2026-03-10T10:00:00+08:00"


# --- 1. the full ladder -----------------------------------------------------------------------


def test_incident_without_release_walks_the_ladder_until_level_2_acknowledges() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.advance(T + 5 * HOUR + 95 * MIN)
    shell.ack(FR, 2, "wang", T + 5 * HOUR + 100 * MIN)
    shell.advance(T + 10 * HOUR)
    assert rows(shell.actions, T, FR) == [
        ("+2:30:00", "warned", "L1", "u1", "li", "sms"),  # the 0.5 warning point
        ("+4:00:00", "warned", "L1", "u1", "li", "sms"),  # 1 h before the deadline
        ("+5:00:01", "breached", "L1", "u1", "li", "sms"),  # the first second past 15:00:00
        ("+5:00:01", "breached", "L1", EMERGENCY_OFFICE, "eo-b", "sms"),
        ("+5:30:01", "repeat", "L1", "u1", "li", "sms"),
        ("+5:30:01", "repeat", "L1", EMERGENCY_OFFICE, "eo-b", "sms"),
        ("+6:00:01", "escalated", "L2", "u1", "wang", "sms"),  # replaces the repeat due then
        ("+6:30:01", "repeat", "L2", "u1", "wang", "sms"),
        # ack at +6:40:00: nothing more, though the ledger keeps the obligation missed
    ]
    state = shell.states[FR]
    assert state.stage == "acknowledged" and state.acked_levels == {2}
    assert next_wake(state) is None


def test_texts_differ_fit_one_sms_and_say_beijing_time() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.advance(T + 6 * HOUR + 1)
    texts = [n.text for n in notifies(shell.actions) if n.unit == "u1"]
    ack = "发 确认{ack_url}"
    assert texts == [
        "【政务时限】首次权威发布·I1:北京时间3月10日15:00到期,剩2小时30分。12:30" + ack,
        "【政务时限】首次权威发布·I1:北京时间3月10日15:00到期,剩1小时。14:00" + ack,
        "【政务时限】首次权威发布·I1:已超北京时间3月10日15:00时限,请立即处置。15:00" + ack,
        "【政务时限】第2次:首次权威发布·I1:已超北京时间3月10日15:00时限,未获确认。15:30" + ack,
        "【政务时限·2级】首次权威发布·I1:已超北京时间3月10日15:00时限,未获确认,请督办。16:00" + ack,
    ]
    assert len(set(texts)) == len(texts)
    assert all(len(t.replace(ACK_URL, "")) <= MAX_TEXT_CHARS for t in texts)
    first = notifies(shell.actions)[0]
    assert first.render("https://g.cn/a/x1").endswith("确认https://g.cn/a/x1")
    assert first.masked_phone == "+86139****9000" and "+8613900139000" not in repr(first)


def test_long_subjects_are_shortened_to_fit() -> None:
    shell = Shell()
    iid = "INCIDENT-2026-0310-CHEMICAL-PLANT-EXPLOSION-ZONE-7"
    shell.event(incident(iid, T_TEXT), T)
    shell.advance(T + 5 * HOUR + 1)
    texts = [n.text for n in notifies(shell.actions, f"first_release_5h:{iid}")]
    assert texts and all(len(t.replace(ACK_URL, "")) <= MAX_TEXT_CHARS for t in texts)
    assert all("INCIDENT-2026" in t and "…" in t and "北京时间3月10日15:00" in t for t in texts)


def test_ack_by_level_1_before_escalation_stops_repeats_and_escalation() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.ack(FR, 1, "li", T + 5 * HOUR + 10 * MIN)
    shell.advance(T + 9 * HOUR)
    assert [r[:2] for r in rows(shell.actions, T, FR)] == [
        ("+2:30:00", "warned"),
        ("+4:00:00", "warned"),
        ("+5:00:01", "breached"),
        ("+5:00:01", "breached"),
    ]


def test_ack_before_the_breach_is_recorded_but_the_breach_still_pages() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.ack(FR, 1, "li", T + 3 * HOUR)
    shell.advance(T + 5 * HOUR + 1)
    assert [r[:2] for r in rows(shell.actions, T, FR)][-2:] == [
        ("+5:00:01", "breached"),
        ("+5:00:01", "breached"),
    ]
    assert shell.notes(FR, "ack") == ["L1 by li while warned"]


def test_repeats_stop_after_max_repeats_at_the_top_rung() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.advance(T + 12 * HOUR)
    got = [r[:3] for r in rows(shell.actions, T, FR) if r[1] != "warned"]
    assert got == [
        ("+5:00:01", "breached", "L1"),
        ("+5:00:01", "breached", "L1"),
        ("+5:30:01", "repeat", "L1"),
        ("+5:30:01", "repeat", "L1"),
        ("+6:00:01", "escalated", "L2"),
        ("+6:30:01", "repeat", "L2"),
        ("+7:00:01", "repeat", "L2"),
        ("+7:30:01", "repeat", "L2"),  # the third and last repeat at the top rung
    ]
    assert next_wake(shell.states[FR]) is None
    assert shell.notes(FR, "repeats_exhausted") == ["L2: 3 repeat(s) sent"]


# --- 2. fulfilment stops everything -----------------------------------------------------------


def test_publication_before_the_deadline_stops_the_warnings() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.event(release("p1", "I1", "2026-03-10T13:10:00+08:00"), T + 3 * HOUR + 10 * MIN)
    shell.advance(T + 10 * HOUR)
    assert rows(shell.actions, T, FR) == [("+2:30:00", "warned", "L1", "u1", "li", "sms")]
    assert shell.states[FR].stage == "stopped" and shell.states[FR].terminal


def test_late_publication_during_the_breach_stops_everything() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.event(release("p1", "I1", "2026-03-10T16:15:00+08:00"), T + 6 * HOUR + 15 * MIN)
    shell.advance(T + 12 * HOUR)
    assert [r[:3] for r in rows(shell.actions, T, FR)][-1] == ("+6:00:01", "escalated", "L2")
    assert shell.notes(FR, "stop") == ["late by p1"]
    # a failure report for a message of the stopped escalation does not fall back
    key = notifies(shell.actions)[-1].key
    assert shell.delivery(key, "failed", T + 12 * HOUR) == []


# --- 3. delivery failures fall back at once ---------------------------------------------------


def test_failed_delivery_falls_back_to_the_next_person_then_the_next_channel() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.advance(T + 5 * HOUR + 1)
    first = next(n for n in notifies(shell.actions) if n.kind == "breached" and n.unit == "u1")
    assert first.key == f"{FR}|breach@{T + 5 * HOUR}#0|L1|li|0"
    at = T + 5 * HOUR + 20
    chain = []
    key = first.key
    for status in ("failed", "undelivered", "failed", "busy"):
        acts = shell.delivery(key, status, at)
        chain.extend(acts)
        if acts and isinstance(acts[0], Notify):
            key = acts[0].key
    assert rows(chain, T, FR) == [
        ("+5:00:20", "fallback", "L1", "u1", "zhang", "sms"),  # next person, same channel, at once
        ("+5:00:20", "fallback", "L1", "u1", "li", "voice"),  # then the next channel
        ("+5:00:20", "fallback", "L1", "u1", "zhang", "voice"),
        (
            "+5:00:20",
            "NO-ON-CALL",
            "L1",
            "u1",
            "every person and channel for u1 level 1 failed",
        ),
    ]
    assert [n.attempt for n in chain if isinstance(n, Notify)] == [1, 2, 3]
    assert all(n.text == first.text for n in chain if isinstance(n, Notify))
    # the same report twice acts once; success reports do nothing
    assert shell.delivery(first.key, "failed", at + 1) == []
    assert shell.delivery(first.key, "delivered", at + 2) == []
    assert shell.delivery(f"{FR}|x|L1|li|0", "failed", at + 3) == []


def test_no_fallback_once_acknowledged() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.advance(T + 5 * HOUR + 1)
    first = next(n for n in notifies(shell.actions) if n.kind == "breached")
    shell.ack(FR, 1, "eo-b", T + 5 * HOUR + 5)
    assert shell.delivery(first.key, "failed", T + 5 * HOUR + 10) == []


def test_failed_warning_falls_back_too() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT), T)
    shell.advance(T + 2 * HOUR + 30 * MIN)
    (warn,) = notifies(shell.actions)
    (fb,) = shell.delivery(warn.key, "undelivered", T + 2 * HOUR + 31 * MIN)
    assert isinstance(fb, Notify) and (fb.person_id, fb.channel, fb.attempt) == ("zhang", "sms", 1)
    assert fb.key == f"{FR}|warn@{T + 150 * MIN}|L1|zhang|1"


# --- 4. the roster decides who, at the instant of each page -----------------------------------


def test_rotation_handoff_between_warning_and_breach() -> None:
    # Monday 04:00: li's week ends at 09:00, when zhang takes over; the breach is at 09:00:01.
    t0 = cst("2026-03-16T04:00:00")
    shell = Shell()
    shell.event(incident("I1", "2026-03-16T04:00:00+08:00"), t0)
    shell.advance(t0 + 5 * HOUR + 1)
    assert [r for r in rows(shell.actions, t0, FR) if r[3] == "u1"] == [
        ("+2:30:00", "warned", "L1", "u1", "li", "sms"),
        ("+4:00:00", "warned", "L1", "u1", "li", "sms"),
        ("+5:00:01", "breached", "L1", "u1", "zhang", "sms"),
    ]


def test_override_wins_from_its_first_second() -> None:
    # Override: chen holds u1 level 1 from 18:00 on 03-10.
    t0 = cst("2026-03-10T14:00:00")
    shell = Shell()
    shell.event(incident("I1", "2026-03-10T14:00:00+08:00"), t0)
    shell.advance(t0 + 4 * HOUR)
    assert rows(shell.actions, t0, FR) == [
        ("+2:30:00", "warned", "L1", "u1", "li", "sms"),  # 16:30
        ("+4:00:00", "warned", "L1", "u1", "chen", "sms"),  # 18:00:00
    ]


def test_unit_not_in_the_roster_is_an_alert() -> None:
    shell = Shell()
    shell.event(incident("I1", T_TEXT, unit="u-none"), T)
    shell.advance(T + 5 * HOUR + 1)
    got = rows(shell.actions, T, FR)
    assert got == [
        ("+2:30:00", "NO-ON-CALL", "L1", "u-none", "u-none is not in the roster roster.yaml"),
        ("+4:00:00", "NO-ON-CALL", "L1", "u-none", "u-none is not in the roster roster.yaml"),
        ("+5:00:01", "NO-ON-CALL", "L1", "u-none", "u-none is not in the roster roster.yaml"),
        ("+5:00:01", "breached", "L1", EMERGENCY_OFFICE, "eo-b", "sms"),  # still told
    ]
    keys = [a.key for a in shell.actions if isinstance(a, NoOnCall)]
    assert len(set(keys)) == 3


def test_rotation_not_started_is_nobody_on_call() -> None:
    # The office's daily rotation starts 2026-03-01 08:30; the breach is at 08:00:01.
    t0 = cst("2026-03-01T03:00:00")
    shell = Shell()
    shell.event(incident("I1", "2026-03-01T03:00:00+08:00"), t0)
    shell.advance(t0 + 5 * HOUR + 1)
    no = [a for a in shell.actions if isinstance(a, NoOnCall) and a.obligation_id == FR]
    assert [(n.unit, n.unit_level, n.reason) for n in no] == [
        ("u1", 1, "nobody on call for u1 level 1 at 3月1日05:30"),
        ("u1", 1, "nobody on call for u1 level 1 at 3月1日07:00"),
        ("u1", 1, "nobody on call for u1 level 1 at 3月1日08:00"),
        (EMERGENCY_OFFICE, 1, "nobody on call for emergency_office level 1 at 3月1日08:00"),
    ]


def test_a_person_on_call_for_two_targets_is_told_once() -> None:
    doc = yaml.safe_load(ROSTER_YAML)
    doc["emergency_office"]["levels"][1]["rotation"]["people"] = ["li", "eo-a"]
    doc["emergency_office"]["levels"][1]["rotation"]["period_days"] = 28
    shell = Shell(roster=roster_from_document(doc, "r.yaml"))
    shell.event(incident("I1", T_TEXT), T)
    shell.advance(T + 5 * HOUR + 1)
    breach = [(n.unit, n.person_id) for n in notifies(shell.actions) if n.kind == "breached"]
    assert breach == [("u1", "li"), (EMERGENCY_OFFICE, "eo-a")]  # li once; the office's next


def test_top_rung_without_a_roster_level_keeps_repeating() -> None:
    book = policies(
        breach=[
            {"notify": [{"unit": "owner", "level": 1}]},
            {"notify": [{"unit": "owner", "level": 5}]},  # u1 has 2 levels
        ]
    )
    shell = Shell(book=book)
    shell.event(incident("I1", T_TEXT), T)
    shell.advance(T + 9 * HOUR)
    got = [r[:3] for r in rows(shell.actions, T, FR) if r[1] != "warned"]
    assert got == [
        ("+5:00:01", "breached", "L1"),
        ("+5:30:01", "repeat", "L1"),
        ("+6:00:01", "repeat", "L1"),  # no rung 2 for u1: the repeat goes ahead
        ("+6:30:01", "repeat", "L1"),
    ]
    assert shell.notes(FR, "top") == ["no rung above 1 for u1; repeating at 1"]


# --- 5. time passing in the shell's absence ---------------------------------------------------


def test_a_late_tick_pages_the_rung_due_now_once() -> None:
    book = policies(
        breach=[
            {"notify": [{"unit": "owner", "level": 1}]},
            {"notify": [{"unit": "owner", "level": 2}]},
            {"notify": [{"unit": EMERGENCY_OFFICE, "level": 1}]},
        ]
    )
    ledger = Ledger(RULES, CAL)
    fx = ledger.apply(incident("I1", T_TEXT))
    state = start(next(e for e in fx if e.obligation_id == FR), book)
    (breach,) = [e for e in ledger.tick(T + 5 * HOUR + 1) if e.obligation_id == FR]
    state, acts = on_effect(state, breach, ROSTER, T + 5 * HOUR + 1)
    assert next_wake(state) == T + 5 * HOUR + 1 + 30 * MIN
    # asleep until +7:30: rung 2 was due at +6:00, rung 3 at +7:00
    state, acts = tick(state, ROSTER, T + 7 * HOUR + 30 * MIN)
    assert rows(acts, T, FR) == [("+7:30:00", "escalated", "L3", EMERGENCY_OFFICE, "eo-b", "sms")]
    assert "1 rung(s) skipped while asleep" in [d for _, w, d in state.log if w == "folded"]
    assert next_wake(state) == T + 8 * HOUR  # repeat in 30 min; no rung 4


# --- 6. effects: idempotence, re-timing, cancellation -----------------------------------------


def _fr_effects() -> tuple[list[Effect], Ledger]:
    ledger = Ledger(RULES, CAL)
    fx = [e for e in ledger.apply(incident("I1", T_TEXT)) if e.obligation_id == FR]
    for t in (T + 150 * MIN, T + 4 * HOUR, T + 5 * HOUR + 1):
        fx += [e for e in ledger.tick(t) if e.obligation_id == FR]
    return fx, ledger


def test_the_same_effect_twice_acts_once() -> None:
    fx, _ = _fr_effects()
    assert [e.kind for e in fx] == ["opened", "warned", "warned", "breached"]
    state = start(fx[0], POLICIES)
    keys: list[str] = []
    for e in fx:
        for _ in range(2):
            state, acts = on_effect(state, e, ROSTER, e.detected_at or e.at)
            keys += [a.key for a in acts]
    assert len(keys) == len(set(keys)) == 4  # 2 warnings, breach to li and to eo-b


def test_a_deadline_moved_past_now_stands_the_breach_down() -> None:
    fx, _ = _fr_effects()
    state = start(fx[0], POLICIES)
    for e in fx:
        state, _ = on_effect(state, e, ROSTER, e.detected_at or e.at)
    assert state.stage == "breached"
    moved = fx[-1]._replace(kind="rescheduled", status="pending", due_at=T + 8 * HOUR, event_id="x")
    state, acts = on_effect(state, moved, ROSTER, T + 5 * HOUR + 10 * MIN)
    assert acts == [] and state.stage == "watching" and next_wake(state) is None
    # the new deadline's breach starts a new ladder with new keys
    again = fx[-1]._replace(at=T + 8 * HOUR, due_at=T + 8 * HOUR, detected_at=T + 8 * HOUR + 1)
    state, acts = on_effect(state, again, ROSTER, T + 8 * HOUR + 1)
    assert {a.key.split("|")[1] for a in acts} == {f"breach@{T + 8 * HOUR}#0"}


def test_cancelled_stops_and_reopened_resumes() -> None:
    fx, _ = _fr_effects()
    state = start(fx[0], POLICIES)
    state, _ = on_effect(state, fx[1], ROSTER, T + 150 * MIN)
    cancel = fx[1]._replace(kind="cancelled", status="cancelled", event_id="downgrade")
    state, _ = on_effect(state, cancel, ROSTER, T + 3 * HOUR)
    state, acts = on_effect(state, fx[2], ROSTER, T + 4 * HOUR)
    assert acts == [] and state.stage == "stopped"
    reopen = fx[1]._replace(kind="reopened", status="pending", event_id="upgrade")
    state, _ = on_effect(state, reopen, ROSTER, T + 4 * HOUR + 1)
    state, acts = on_effect(state, fx[3], ROSTER, T + 5 * HOUR + 1)
    assert [a.kind for a in acts if isinstance(a, Notify)] == ["breached", "breached"]


def test_warning_after_the_deadline_is_skipped() -> None:
    fx, _ = _fr_effects()
    state = start(fx[0], POLICIES)
    state, acts = on_effect(state, fx[1], ROSTER, T + 5 * HOUR)
    assert acts == [] and state.stage == "watching"


def test_effect_of_another_obligation_is_refused() -> None:
    fx, _ = _fr_effects()
    state = start(fx[0], POLICIES)
    with pytest.raises(ValueError, match="given to first_release_5h:I1"):
        on_effect(state, fx[1]._replace(obligation_id="x:y"), ROSTER, T)


# --- 7. never the same text three times in 24 h to one number ---------------------------------


def test_guard_varies_the_third_identical_text_and_drops_when_no_variant_is_left() -> None:
    text = "【政务时限】X·Y:已超时限。15:00发 确认{ack_url}"
    phone = "+8613800138000"
    h = [(phone, text, T), (phone, text, T + 60)]
    assert guard_text(h[:1], phone, text, T + 120) == (text, "")
    varied, why = guard_text(h, phone, text, T + 120)
    assert varied == "【政务时限】X·Y:已超时限。15:00发(#2) 确认{ack_url}"
    assert why == "same text twice to +86138****8000 in 24 h: varied (#2)"
    assert guard_text(h, "+8613900139000", text, T + 120) == (text, "")  # another number
    assert guard_text(h, phone, text, T + 86_400 + 1) == (text, "")  # a day later
    full = h + [(phone, varied, T)] * 2
    assert guard_text(full, phone, text, T + 120)[0] == text.replace("发 ", "发(#3) ")
    full += [(phone, text.replace("发 ", f"发(#{n}) "), T) for n in range(3, 10) for _ in (0, 1)]
    assert guard_text(full, phone, text, T + 120) == (
        None,
        "same text twice to +86138****8000 in 24 h and no variant left: dropped",
    )


def test_a_shared_duty_phone_never_gets_one_text_three_times() -> None:
    doc = yaml.safe_load(ROSTER_YAML)
    desk = "+862112345678"  # a duty desk: three people, one number
    for p in doc["people"]:
        if p["id"] in ("li", "wang", "eo-b"):
            p["phone"] = desk
    book = policies(
        warn=[
            {"unit": "owner", "level": 1},
            {"unit": "owner", "level": 2},
            {"unit": EMERGENCY_OFFICE, "level": 1},
        ]
    )
    shell = Shell(roster=roster_from_document(doc, "r.yaml"), book=book)
    shell.event(incident("I1", T_TEXT), T)
    shell.advance(T + 150 * MIN)
    texts = [n.text for n in notifies(shell.actions)]
    assert [n.person_id for n in notifies(shell.actions)] == ["li", "wang", "eo-b"]
    assert texts[0] == texts[1] and texts[2] == texts[0].replace("发 ", "发(#2) ")
    assert shell.notes(FR, "guard") == [
        f"{FR}|warn@{T + 150 * MIN}|L1|eo-b|0: same text twice to +8621****5678 in 24 h: "
        "varied (#2)"
    ]


# --- 8. properties ----------------------------------------------------------------------------

KINDS = [
    "warned",
    "breached",
    "rescheduled",
    "extended",
    "paused",
    "resumed",
    "met",
    "late",
    "unverifiable",
    "cancelled",
    "reopened",
]
STATUS = {
    "warned": "pending",
    "breached": "missed",
    "met": "met",
    "late": "late",
    "unverifiable": "unverifiable",
    "cancelled": "cancelled",
    "reopened": "pending",
}

step = st.one_of(
    st.tuples(st.just("effect"), st.sampled_from(KINDS), st.sampled_from(["pending", "missed"])),
    st.tuples(st.just("tick"), st.just(""), st.just("")),
    st.tuples(st.just("ack"), st.sampled_from(["1", "2"]), st.sampled_from(["li", "wang"])),
    st.tuples(st.just("fail"), st.sampled_from(["failed", "undelivered", "sent"]), st.just("")),
    st.tuples(st.just("dup"), st.just(""), st.just("")),
)


@settings(max_examples=300, deadline=None)
@given(
    steps=st.lists(st.tuples(step, st.integers(0, 50 * MIN)), max_size=40),
    due_h=st.integers(1, 8),
)
def test_fulfilled_never_notifies_and_keys_are_never_reused(
    steps: list[tuple[tuple[str, str, str], int]], due_h: int
) -> None:
    due = T + due_h * HOUR
    base = Effect("opened", FR, "first_release_5h", "I1", "u1", T, due, "pending", "rep-I1")
    state = start(base, POLICIES)
    now, fulfilled, keys = T, False, set()
    applied: list[Effect] = []
    for n, ((what, a, b), gap) in enumerate(steps):
        now += gap
        acts: list[Action] = []
        if what == "effect":
            status = STATUS.get(a, b)
            at = due if a == "breached" else now
            e = base._replace(kind=a, at=at, status=status, event_id=f"e{n}", detected_at=now)
            applied.append(e)
            state, acts = on_effect(state, e, ROSTER, now)
            fulfilled = fulfilled or a in ("met", "late", "unverifiable")
        elif what == "dup" and applied:
            state, acts = on_effect(state, applied[-1], ROSTER, now)
            assert acts == []
        elif what == "tick":
            wake = next_wake(state)
            if wake is not None:
                now = max(now, wake)
            state, acts = tick(state, ROSTER, now)
            assert next_wake(state) is None or next_wake(state) > now  # type: ignore[operator]
        elif what == "ack":
            state, acts = on_ack(state, int(a), b, now)
        elif what == "fail" and state.sent:
            state, acts = on_delivery(state, state.sent[-1].key, a, now)
        if fulfilled:
            assert not [x for x in acts if isinstance(x, Notify)], (what, a, state.log[-3:])
            assert next_wake(state) is None
        for x in acts:
            assert x.key not in keys, x.key
            keys.add(x.key)


@settings(max_examples=100, deadline=None)
@given(order=st.permutations(range(4)), dups=st.lists(st.integers(0, 3), max_size=6))
def test_replaying_effects_gives_the_same_keys(order: list[int], dups: list[int]) -> None:
    fx, _ = _fr_effects()
    once = start(fx[0], POLICIES)
    keys_once: list[str] = []
    for e in fx:
        once, acts = on_effect(once, e, ROSTER, e.detected_at or e.at)
        keys_once += [a.key for a in acts]
    twice = start(fx[0], POLICIES)
    keys_twice: list[str] = []
    for i in [*range(4), *dups]:
        e = fx[i]
        twice, acts = on_effect(twice, e, ROSTER, e.detected_at or e.at)
        keys_twice += [a.key for a in acts]
    assert keys_twice == keys_once


# --- 9. policies ------------------------------------------------------------------------------


def test_layering_rule_and_unit_over_the_default() -> None:
    text = (
        POLICY_YAML
        + """
overrides:
  - match: {unit: u1}
    repeat_minutes: 20
    channels: [sms]
  - match: {rule: first_release_5h}
    repeat_minutes: 10
    escalate_after_minutes: 20
  - match: {rule: first_release_5h, unit: u2}
    max_repeats: 1
"""
    )
    book = policies(text)
    u1 = book.policy_for("first_release_5h", "u1")
    assert u1.name == "default+unit:u1+rule:first_release_5h"
    assert (u1.repeat_seconds, u1.escalate_after_seconds, u1.channels) == (600, 1200, ("sms",))
    u2 = book.policy_for("first_release_5h", "u2")
    assert u2.name == "default+rule:first_release_5h+rule:first_release_5h+unit:u2"
    assert (u2.repeat_seconds, u2.max_repeats, u2.channels) == (600, 1, ("sms", "voice"))
    other = book.policy_for("annual_report", "u1")
    assert (other.repeat_seconds, other.escalate_after_seconds) == (1200, 3600)


def test_the_policy_is_frozen_when_the_obligation_opens() -> None:
    fx, _ = _fr_effects()
    state = start(fx[0], POLICIES)
    faster = policies(repeat_minutes=5)  # the file is edited after the opening
    assert faster.policy_for("first_release_5h", "u1").repeat_seconds == 300
    state, _ = on_effect(state, fx[3], ROSTER, T + 5 * HOUR + 1)
    assert next_wake(state) == T + 5 * HOUR + 1 + 30 * MIN
    assert dataclasses.is_dataclass(state.policy) and state.policy.repeat_seconds == 1800


def test_short_name_falls_back_to_the_chinese_title() -> None:
    book = policies()
    assert book.short_name("first_release_5h") == "首次权威发布"
    title = "重大突发事件舆情 5 小时内发布权威信息 Authoritative information within 5 hours"
    assert book.short_name("opinion_major_5h", title) == "重大突发事件舆情5…"
    assert (
        book.short_name("rumor_rebuttal", "网络谣言及时辟谣 Publish the truth")
        == "网络谣言及时辟谣"
    )
    assert book.short_name("x_rule") == "x_rule"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"default": {"repeat_minute": 5}}, "policy.yaml: default.repeat_minute: unknown key"),
        ({"default": {"channels": ["sms", "fax"]}}, "policy.yaml: default.channels[1]: Input"),
        ({"default": {"channels": ["sms", "sms"]}}, "default.channels: 'sms' is listed twice"),
        ({"default": {"breach": []}}, "default.breach: List should have at least 1 item"),
        ({"default": {"warn": [{"unit": "owner", "level": 0}]}}, "default.warn[0].level: Input"),
        (
            {"overrides": [{"match": {}, "max_repeats": 1}]},
            "policy.yaml: overrides[0].match: give rule, unit or both",
        ),
        (
            {"overrides": [{"match": {"rule": "r"}, "warn": None}]},
            "policy.yaml: overrides[0]: warn: give a value or leave the key out",
        ),
        (
            {"overrides": [{"match": {"rule": "r"}}, {"match": {"rule": "r"}}]},
            "policy.yaml: overrides: overrides[1] and overrides[0] have the same match",
        ),
        (
            {"overrides": [{"match": {"rule": "Bad-Rule"}}]},
            "policy.yaml: overrides[0].match.rule: String should match pattern",
        ),
    ],
)
def test_malformed_policies_name_the_file_and_field(change: dict[str, Any], message: str) -> None:
    data = {"name": "p", **change}
    with pytest.raises(PolicyError) as info:
        parse_policies(data, "policy.yaml")
    assert message in str(info.value), str(info.value)


def test_bundled_policy_loads_and_texts_fit() -> None:
    book = load_policies()
    assert book.name == "default"
    fr = book.policy_for("first_release_5h", "u1")
    assert (fr.repeat_seconds, fr.escalate_after_seconds, fr.channels) == (
        600,
        1200,
        ("sms", "voice"),
    )
    assert book.policy_for("online_posting_10wd", "u1").breach[0][1].unit == EMERGENCY_OFFICE
    # every bundled rule's breach text fits one SMS for a typical subject
    fx, _ = _fr_effects()
    for rule in sorted({r.id for p in RULES.packs.values() for r in p.rules}):
        e = fx[0]._replace(
            obligation_id=f"{rule}:D-2026-0042", rule_id=rule, subject_id="D-2026-0042"
        )
        state = start(e, book)
        for kind in ("warned", "breached", "repeat", "escalated"):
            text = compose(state, kind, T + 3 * HOUR, 3, 3)
            assert len(text.replace(ACK_URL, "")) <= MAX_TEXT_CHARS, text
            assert "D-2026-0042" in text


def test_policy_checked_against_the_roster(tmp_path: Path) -> None:
    doc = yaml.safe_load(ROSTER_YAML)
    del doc["emergency_office"]
    doc["overrides"] = []
    roster_file = tmp_path / "roster.yaml"
    roster_file.write_text(yaml.safe_dump(doc, allow_unicode=True), encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_escalation(roster_path=roster_file)
    lines = str(info.value).splitlines()
    assert len(lines) == 2
    assert lines[0].endswith(
        "default.yaml: default: breach[0].notify[1].unit: 'emergency_office' is not in the "
        f"roster {roster_file}"
    )
    assert "breach[2].notify[1].unit" in lines[1]
    roster = roster_from_document(yaml.safe_load(ROSTER_YAML), "r.yaml")
    assert policy_problems(load_policies(), roster) == []


def test_policy_file_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text("name: p\ndefault: {repeat_minutes: 0}\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"p\.yaml: default\.repeat_minutes: Input should be"):
        load_policies(path)
    path.write_text("name: [p\n", encoding="utf-8")
    with pytest.raises(PolicyError, match=r"p\.yaml: not valid YAML"):
        load_policies(path)
