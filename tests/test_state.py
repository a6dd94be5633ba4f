"""Subject state survives encoding: a restored ledger behaves exactly like the original."""

from __future__ import annotations

import json

from hypothesis import given
from hypothesis import strategies as st
from test_ledger_properties import BOOK, CAL, PROPS, _end, histories

from deadlines.ledger import Ledger
from deadlines.obligations import Effect
from deadlines.rules import RuleBook
from deadlines.state import RuleRegistry, StateError, decode_subject, encode_subject, rules_used
from schemas.events import Event, parse_event


def restore(led: Ledger, registry: RuleRegistry | None = None) -> Ledger:
    """A fresh ledger rebuilt from the JSON of every subject (as from a changelog)."""
    registry = registry or RuleRegistry(led.book)
    fresh = Ledger(led.book, led.calendar)
    for subject in led.subjects.values():
        text = json.dumps(encode_subject(subject), ensure_ascii=False)
        fresh.load_subject(decode_subject(json.loads(text), registry))
    return fresh


def snapshot(led: Ledger) -> list[tuple[object, ...]]:
    return sorted(
        (ob.id, ob.status, ob.due_at, ob.fulfilled_by, ob.warned_until, ob.timeline)
        for ob in led.obligations()
    )


@PROPS
@given(histories(), st.integers(min_value=1, max_value=30), st.data())
def test_restored_ledger_continues_exactly_like_the_original(
    history: tuple[int, list[Event]], cut: int, data: st.DataObject
) -> None:
    base, events = history
    split = min(cut, len(events))
    mid = data.draw(st.integers(base, _end(base)))
    original = Ledger(BOOK, CAL)
    original.tick(base)
    for e in events[:split]:
        original.apply(e)
    original.tick(mid, exact=True)
    restored = restore(original)
    restored.tick(mid)  # a restarted worker's first tick: it has not lost its place
    assert snapshot(restored) == snapshot(original)
    fx_a: list[Effect] = []
    fx_b: list[Effect] = []
    for e in events[split:] + events[:split]:  # new events, and redelivered old ones
        fx_a += original.apply(e)
        fx_b += restored.apply(e)
    fx_a += original.tick(_end(base) + 86400 * 60, exact=True)
    fx_b += restored.tick(_end(base) + 86400 * 60, exact=True)
    assert fx_a == fx_b
    assert snapshot(restored) == snapshot(original)


def app_events() -> list[Event]:
    raw = [
        {
            "event_id": "a1",
            "type": "application.received",
            "unit": "u1",
            "application_id": "A1",
            "received_at": "2026-03-02",
        },
        {
            "event_id": "a2",
            "type": "application.extended",
            "unit": "u1",
            "application_id": "A1",
            "at": "2026-03-20",
            "working_days": 20,
        },
    ]
    return [parse_event(r) for r in raw]


def test_an_edited_pack_does_not_move_a_restored_obligation() -> None:
    led = Ledger(BOOK, CAL)
    for e in app_events():
        led.apply(e)
    ob = led.get("application_reply_20wd:A1")
    assert ob is not None
    due, key = ob.due_at, ob.rule.key
    subject = led.subjects["application_id=A1"]
    stored = encode_subject(subject)
    frozen = {
        k: RuleRegistry.frozen(led.subjects["application_id=A1"].obligations[0].rule)
        for k in rules_used(subject)
    }  # type: ignore[index]

    # The operator's edited book no longer has this version (say, the window changed).
    edited = RuleBook(
        packs={k: v for k, v in BOOK.packs.items() if k != "default"}
        | {
            "default": type(BOOK.packs["default"])(
                **{
                    **{
                        f: getattr(BOOK.packs["default"], f)
                        for f in BOOK.packs["default"].__slots__
                    },
                    "rules": tuple(r for r in BOOK.packs["default"].rules if r.key != key),
                }
            )
        },
        default_pack=BOOK.default_pack,
        units=BOOK.units,
    )
    registry = RuleRegistry(edited)
    assert key not in registry
    try:
        decode_subject(stored, registry)
        raise AssertionError("expected StateError for an unknown rule version")
    except StateError as exc:
        assert key in str(exc)
    for k, text in frozen.items():
        registry.add_frozen(k, text)
    restored = decode_subject(stored, registry)
    assert restored.obligations is not None
    assert restored.obligations[0].due_at == due
    assert restored.obligations[0].rule.key == key
