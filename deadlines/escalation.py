"""Escalation: who is told what, and when, about an obligation's warnings and breach.

A *policy* (data; ``deadlines/policies/default.yaml``, docs/escalation.md) says whom a warning
goes to, the breach **ladder** (rung 1, 2, 3 …, each a list of roster targets such as "the
owning unit, level 1" and "the emergency office, level 1"), how often an unacknowledged rung is
repeated, after how long the next rung is paged, and the channels to try in order. Policies are
chosen per rule id and/or unit, layered over a default, and **frozen** onto the obligation's
:class:`EscalationState` when it is first seen, so editing the policy file never moves a running
escalation.

The decisions are pure functions of (state, input, now) that return the new state and the
actions to take (:class:`Notify`, :class:`NoOnCall`); nothing here reads the clock or sends
anything::

    state = start(opened_effect, book, title=rule.title)
    state, actions = on_effect(state, effect, roster, now)     # warned, breached, met, …
    state, actions = tick(state, roster, now)                  # repeats and escalation
    state, actions = on_ack(state, level, person_id, now)      # stops repeats and escalation
    state, actions = on_delivery(state, key, "failed", now)    # fallback: next person/channel
    next_wake(state)                                           # when tick wants to run

Timeline semantics (times are integer epoch seconds):

* **warned** → one message to each ``warn`` target (default: the owning unit, level 1); no
  repeats. A warning processed at or after the deadline is skipped (the breach follows).
* **breached** → rung 1 is paged at ``now`` (default: owner level 1 + emergency office level 1).
  While the breach is unacknowledged the current rung is repeated every ``repeat_minutes``
  after its last page, at most ``max_repeats`` times, and ``escalate_after_minutes`` after a
  rung was paged the next rung is paged (the escalation replaces a repeat due at the same
  instant; lower rungs are not paged again). A ``tick`` that comes late pages the rung that is
  due now once, folding the rungs skipped over.
* **ack** by anyone (any rung) halts the breach: no more repeats, no escalation. An ack before
  the breach is recorded only.
* **met / late / unverifiable** stop everything for good; **cancelled** stops until the ledger
  reopens the obligation. A re-timed deadline (extended, paused, rescheduled…) that leaves the
  obligation no longer missed stands the breach down; a later breach starts a new ladder.
* **delivery failed / undelivered** → at once, the next entry of the frozen fallback chain of
  that message: the next person of that level on the same channel, then each person on the next
  channel (the policy's ``channels`` order). Chain exhausted → :class:`NoOnCall`.
* A target unit with nobody on call (not in the roster, rotation not started) → :class:`NoOnCall`.
* Never the same text three times in 24 h to one number: a third identical text is varied
  (a ``(#n)`` marker), and dropped with a logged reason if no variant is left
  (:func:`guard_text`).

Every action has a deterministic key (obligation, step, level, person, attempt), so replaying
the same inputs yields the same keys and the shell can deliver at least once, idempotently.

This module holds the decisions and the sending they share. The policy file and the
:class:`~deadlines.escalation_policy.PolicyBook` are :mod:`deadlines.escalation_policy`, the
state and the actions :mod:`deadlines.escalation_state`, the texts and the same-text guard
:mod:`deadlines.escalation_texts`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from deadlines.escalation_policy import PolicyBook, Target
from deadlines.escalation_state import (
    ACKED,
    BREACHED,
    DELIVERY_FAILED,
    DELIVERY_OK,
    STOPPED,
    WARNED,
    WATCHING,
    Ack,
    Action,
    Contact,
    EscalationState,
    NoOnCall,
    Notify,
    Sent,
)
from deadlines.escalation_texts import compose, day_and_time, guard_text
from deadlines.obligations import Effect
from deadlines.roster import Person, Roster, mask_phone

__all__ = ["next_wake", "on_ack", "on_delivery", "on_effect", "start", "tick"]

_FULFILLED = frozenset({"met", "late", "unverifiable"})
_MISSED = "missed"


def start(effect: Effect, book: PolicyBook, *, title: str | None = None) -> EscalationState:
    """A new state for the obligation of ``effect``, with its policy frozen in.

    Call it when the obligation is first seen (its ``opened`` effect, or any effect if the
    state was lost), then pass every effect to :func:`on_effect`. ``title`` is the rule's
    title, used for the message's short name when the policy file gives none."""
    policy = book.policy_for(effect.rule_id, effect.unit)
    state = EscalationState(
        obligation_id=effect.obligation_id,
        rule_id=effect.rule_id,
        subject_id=effect.subject_id,
        unit=effect.unit,
        opened_at=effect.at,
        due_at=effect.due_at,
        policy=policy,
        short_name=book.short_name(effect.rule_id, title),
    )
    return state.note(effect.at, "policy", f"{book.name}: {policy.name}")


# ---------------------------------------------------------------------------------------
# Sending (shared by warnings, breach pages, repeats, escalation and fallback)


def _chain(people: Sequence[Person], channels: Sequence[str]) -> tuple[Contact, ...]:
    """The fallback order: every person on the first channel, then on the next channel."""
    return tuple(Contact(p.id, p.phone, ch) for ch in channels for p in people if ch in p.channels)


def _key(state: EscalationState, step: str, level: int, person: str, attempt: int) -> str:
    return f"{state.obligation_id}|{step}|L{level}|{person}|{attempt}"


def _try_chain(
    state: EscalationState,
    out: list[Action],
    *,
    step: str,
    kind: str,
    level: int,
    unit: str,
    unit_level: int,
    chain: tuple[Contact, ...],
    first: int,
    text: str,
    now: int,
    skip_people: frozenset[str] = frozenset(),
) -> tuple[EscalationState, str | None]:
    """Send to the first usable entry of ``chain`` from ``first``; returns who was told."""
    history = [(s.contact.phone, s.text, s.at) for s in state.sent]
    for attempt in range(first, len(chain)):
        contact = chain[attempt]
        if contact.person_id in skip_people:
            continue
        key = _key(state, step, level, contact.person_id, attempt)
        if any(s.key == key for s in state.sent):
            return state, contact.person_id  # already sent (idempotent)
        final, why = guard_text(history, contact.phone, text, now)
        if why:
            state = state.note(now, "guard", f"{key}: {why}")
        if final is None:
            continue
        state = replace(
            state,
            sent=(
                *state.sent,
                Sent(key, step, kind, level, unit, unit_level, attempt, chain, final, now),
            ),
        )
        state = state.note(now, kind, f"{key} -> {mask_phone(contact.phone)} by {contact.channel}")
        out.append(
            Notify(
                key=key,
                obligation_id=state.obligation_id,
                step=step,
                kind=kind,
                level=level,
                unit=unit,
                unit_level=unit_level,
                person_id=contact.person_id,
                phone=contact.phone,
                masked_phone=mask_phone(contact.phone),
                channel=contact.channel,
                text=final,
                at=now,
                attempt=attempt,
            )
        )
        return state, contact.person_id
    return state, None


def _no_on_call(
    state: EscalationState,
    out: list[Action],
    step: str,
    level: int,
    unit: str,
    unit_level: int,
    now: int,
    reason: str,
    tag: str = "nobody",
) -> EscalationState:
    key = f"{state.obligation_id}|{step}|L{level}|{unit}#{unit_level}|{tag}"
    out.append(NoOnCall(key, state.obligation_id, step, level, unit, unit_level, now, reason))
    return state.note(now, "no_on_call", f"{key}: {reason}")


def _page(
    state: EscalationState,
    out: list[Action],
    roster: Roster,
    targets: Sequence[Target],
    *,
    step: str,
    kind: str,
    level: int,
    text: str,
    now: int,
) -> EscalationState:
    """Tell each target's on-call person once (a person on call for two targets: once)."""
    told: set[str] = set()
    for target in targets:
        unit = target.resolve(state.unit)
        if not roster.has_unit(unit):
            state = _no_on_call(
                state,
                out,
                step,
                level,
                unit,
                target.level,
                now,
                f"{unit} is not in the roster {roster.source}",
            )
            continue
        if target.level > roster.levels(unit):
            state = state.note(now, "skip", f"{step} L{level}: {unit} has no level {target.level}")
            continue
        people = roster.on_call(unit, target.level, now)
        chain = _chain(people, state.policy.channels)
        if not chain:
            why = (
                f"nobody on call for {unit} level {target.level} at {day_and_time(now)}"
                if not people
                else f"nobody on call for {unit} level {target.level} has a channel of "
                f"{', '.join(state.policy.channels)}"
            )
            state = _no_on_call(state, out, step, level, unit, target.level, now, why)
            continue
        if all(c.person_id in told for c in chain):
            state = state.note(now, "skip", f"{step} L{level}: {unit} on call already told")
            continue
        state, who = _try_chain(
            state,
            out,
            step=step,
            kind=kind,
            level=level,
            unit=unit,
            unit_level=target.level,
            chain=chain,
            first=0,
            text=text,
            now=now,
            skip_people=frozenset(told),
        )
        if who is None:
            state = _no_on_call(
                state,
                out,
                step,
                level,
                unit,
                target.level,
                now,
                "every message was dropped by the same-text guard",
                "guard",
            )
        else:
            told.add(who)
    return state


def _rung_exists(state: EscalationState, roster: Roster, level: int) -> bool:
    """Rung ``level`` exists in the policy and names at least one level the roster has
    (a target unit missing from the roster counts: it is reported when paged)."""
    if level > len(state.policy.breach):
        return False
    for t in state.policy.breach[level - 1]:
        unit = t.resolve(state.unit)
        if not roster.has_unit(unit) or t.level <= roster.levels(unit):
            return True
    return False


def _page_rung(
    state: EscalationState,
    out: list[Action],
    roster: Roster,
    level: int,
    repeat: int,
    kind: str,
    now: int,
) -> EscalationState:
    step = f"{state.breach_id}#{repeat}"
    text = compose(state, kind, now, level, repeat)
    state = _page(
        state,
        out,
        roster,
        state.policy.breach[level - 1],
        step=step,
        kind=kind,
        level=level,
        text=text,
        now=now,
    )
    pol = state.policy
    repeat_at = now + pol.repeat_seconds if repeat < pol.max_repeats else None
    if repeat_at is None:
        state = state.note(now, "repeats_exhausted", f"L{level}: {pol.max_repeats} repeat(s) sent")
    return replace(state, repeat_at=repeat_at, repeats=repeat)


# ---------------------------------------------------------------------------------------
# The decisions


def on_effect(
    state: EscalationState, effect: Effect, roster: Roster, now: int
) -> tuple[EscalationState, list[Action]]:
    """React to one ledger effect of this obligation; the same effect twice acts once."""
    if effect.obligation_id != state.obligation_id:
        raise ValueError(f"effect of {effect.obligation_id} given to {state.obligation_id}")
    out: list[Action] = []
    if effect.key in state.seen:
        return state, out
    state = replace(state, seen=(*state.seen, effect.key), due_at=effect.due_at)
    kind = effect.kind
    if state.terminal:
        return state.note(now, "ignored", f"{kind}: escalation is over"), out
    if kind in _FULFILLED:
        return _stop(state, now, f"{kind} by {effect.event_id}", terminal=True), out
    if kind == "cancelled":
        return _stop(state, now, f"cancelled: {effect.detail}", terminal=False), out
    if kind == "reopened":
        if state.stage == STOPPED:
            state = replace(state, stage=WATCHING).note(now, "reopened", effect.detail)
        return state, out
    if state.stage == STOPPED:
        return state.note(now, "ignored", f"{kind}: stopped"), out
    if kind == "breached":
        return _breach(state, effect, roster, now, out), out
    if state.stage in (BREACHED, ACKED) and effect.status != _MISSED:
        state = replace(
            state, stage=WATCHING, level=0, level_since=None, repeat_at=None, escalate_at=None
        )
        state = state.note(now, "stand_down", f"{kind}: no longer missed; {effect.detail}")
    if kind == "warned":
        return _warn(state, effect, roster, now, out), out
    return state, out


def _warn(
    state: EscalationState, effect: Effect, roster: Roster, now: int, out: list[Action]
) -> EscalationState:
    if now >= state.due_at:
        return state.note(
            now, "skip", f"warning at {day_and_time(effect.at)} came after the deadline"
        )
    if not state.policy.warn:
        return replace(state, stage=WARNED)
    step = f"warn@{effect.at}"
    text = compose(state, "warned", now)
    state = _page(
        state, out, roster, state.policy.warn, step=step, kind="warned", level=1, text=text, now=now
    )
    return replace(state, stage=WARNED)


def _breach(
    state: EscalationState, effect: Effect, roster: Roster, now: int, out: list[Action]
) -> EscalationState:
    breach_id = f"breach@{effect.due_at}"
    if state.breach_id == breach_id and state.stage in (BREACHED, ACKED):
        return state
    state = replace(state, stage=BREACHED, breach_id=breach_id, level=1, level_since=now)
    state = _page_rung(state, out, roster, 1, 0, "breached", now)
    esc = now + state.policy.escalate_after_seconds if len(state.policy.breach) > 1 else None
    return replace(state, escalate_at=esc)


def tick(state: EscalationState, roster: Roster, now: int) -> tuple[EscalationState, list[Action]]:
    """Let time pass to ``now``: escalate an unacknowledged rung, or repeat it."""
    out: list[Action] = []
    if state.stage != BREACHED:
        return state, out
    pol = state.policy
    if state.escalate_at is not None and state.escalate_at <= now:
        level, due, folded = state.level, state.escalate_at, 0
        while due <= now and _rung_exists(state, roster, level + 1):
            level += 1
            folded += 1
            due += pol.escalate_after_seconds
        if level == state.level:
            state = replace(state, escalate_at=None).note(
                now, "top", f"no rung above {level} for {state.unit}; repeating at {level}"
            )
        else:
            if folded > 1:
                state = state.note(now, "folded", f"{folded - 1} rung(s) skipped while asleep")
            state = replace(state, level=level, level_since=now)
            state = _page_rung(state, out, roster, level, 0, "escalated", now)
            more = level < len(pol.breach)
            return replace(
                state, escalate_at=now + pol.escalate_after_seconds if more else None
            ), out
    if state.repeat_at is not None and state.repeat_at <= now:
        state = _page_rung(state, out, roster, state.level, state.repeats + 1, "repeat", now)
    return state, out


def next_wake(state: EscalationState) -> int | None:
    """When :func:`tick` next has something to do (None: nothing to wait for)."""
    if state.stage != BREACHED:
        return None
    times = [t for t in (state.repeat_at, state.escalate_at) if t is not None]
    return min(times) if times else None


def on_ack(
    state: EscalationState, level: int, person: str, now: int
) -> tuple[EscalationState, list[Action]]:
    """Someone acknowledged (by the signed link or the board). During a breach any ack halts
    repeats and escalation; before it, the ack is only recorded. Repeated acks act once."""
    out: list[Action] = []
    if level < 1:
        raise ValueError(f"levels start at 1, got {level}")
    stage = state.breach_id if state.stage in (BREACHED, ACKED) else ""
    if any(a.stage == stage and a.level == level and a.person_id == person for a in state.acks):
        return state, out
    paged = any(s.level == level and s.contact.person_id == person for s in state.sent)
    note = "" if paged else " (not paged at that level)"
    state = replace(state, acks=(*state.acks, Ack(stage, level, person, now)))
    if state.stage == BREACHED:
        state = replace(state, stage=ACKED, repeat_at=None, escalate_at=None)
        return state.note(
            now, "ack", f"L{level} by {person}{note}: repeats and escalation stop"
        ), out
    return state.note(now, "ack", f"L{level} by {person}{note} while {state.stage}"), out


def on_delivery(
    state: EscalationState, message_key: str, status: str, now: int
) -> tuple[EscalationState, list[Action]]:
    """A delivery report. A failure moves at once to the next entry of that message's chain
    (next person at that level, then the next channel), unless the escalation no longer needs
    it (acknowledged or stopped). Reports are idempotent."""
    out: list[Action] = []
    index = next((i for i, s in enumerate(state.sent) if s.key == message_key), None)
    if index is None:
        return state.note(now, "ignored", f"delivery {status} for unknown {message_key}"), out
    sent = state.sent[index]
    status = status.lower()
    if status not in DELIVERY_OK and status not in DELIVERY_FAILED:
        return state.note(now, "ignored", f"{message_key}: unknown status {status!r}"), out
    if sent.status in DELIVERY_FAILED:
        return state, out  # already handled; a late "sent" after "failed" changes nothing
    sent_list = list(state.sent)
    sent_list[index] = replace(sent, status=status)
    state = replace(state, sent=tuple(sent_list))
    if status in DELIVERY_OK:
        return state, out
    state = state.note(now, "failed", f"{message_key}: {status}")
    if sent.step.startswith("warn@"):
        needed = state.stage in (WATCHING, WARNED)
    else:
        needed = state.stage == BREACHED and sent.step.startswith(f"{state.breach_id}#")
    if not needed:
        return state.note(now, "no_fallback", f"{message_key}: escalation is {state.stage}"), out
    state, who = _try_chain(
        state,
        out,
        step=sent.step,
        kind="fallback",
        level=sent.level,
        unit=sent.unit,
        unit_level=sent.unit_level,
        chain=sent.chain,
        first=sent.attempt + 1,
        text=sent.text,
        now=now,
    )
    if who is None:
        state = _no_on_call(
            state,
            out,
            sent.step,
            sent.level,
            sent.unit,
            sent.unit_level,
            now,
            f"every person and channel for {sent.unit} level {sent.unit_level} failed",
            "undeliverable",
        )
    return state, out


def _stop(state: EscalationState, now: int, why: str, *, terminal: bool) -> EscalationState:
    state = replace(state, stage=STOPPED, terminal=terminal, repeat_at=None, escalate_at=None)
    return state.note(now, "stop", why)
