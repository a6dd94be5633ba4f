"""The notifier's inputs: the records of ``govclock-escalation-inputs`` and how to send them.

Everything that changes an obligation's escalation goes through that one topic, keyed by the
obligation id and in the partition Kafka's partitioner gives it
(:func:`streams.topics.escalation_partition`), so the worker that owns the obligation's
escalation sees its inputs one at a time, in order (docs/escalation.md, "The live notifier")::

    {"effect": {<notification record>}, "at": 1773126001}          ledger effect, re-keyed
    {"ack": {"obligation_id": "…", "level": 1, "person": "li", "at": …, "via": "api"}}
    {"delivery": {"key": "…" | null, "sid": "SM…", "status": "undelivered",
                  "error_code": 30003, "at": …}}                   a delivery report
    {"tick": 1773126301}                                           time passed (one partition)
    {"batch": [<input>, …]}          several inputs of one partition, in order (the feed's)

``at`` is when the input happened (the ack, the report) for the audit trail; decisions use the
notifier's clock when it applies the input. A delivery report whose message key is not known
where the report arrived (another worker sent the message, or the report beat the send's
bookkeeping) carries only the provider's id; the notifier that owns the partition looks it up
in its own sent log.

Other code acknowledges with :func:`web.acks.submit_ack` (the HTTP API, the SMS reply and the
signed-link page all call it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import orjson

from deadlines.obligations import Effect

__all__ = [
    "SUBMIT_TIMEOUT_S",
    "AckInput",
    "DeliveryInput",
    "EffectInput",
    "EscalationOff",
    "Input",
    "InputError",
    "TickInput",
    "ack_input",
    "decode_input",
    "delivery_input",
    "effect_input",
    "obligation_of",
    "split_inputs",
    "tick_input",
]

#: How long :func:`web.acks.submit_ack` waits for the broker's acknowledgement.
SUBMIT_TIMEOUT_S = 10.0
#: Person ids as the roster allows them.
_PERSON_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-")


class InputError(ValueError):
    """A record that is not a notifier input; it goes to the dead-letter topic."""


class EscalationOff(RuntimeError):
    """The notifier is not running on this worker (no roster configured)."""


@dataclass(frozen=True, slots=True)
class EffectInput:
    effect: Effect
    at: int


@dataclass(frozen=True, slots=True)
class AckInput:
    obligation_id: str
    level: int
    person: str
    at: int
    via: str = "api"


@dataclass(frozen=True, slots=True)
class DeliveryInput:
    key: str | None  # the message (Notify) key, when the receiver could tell it
    sid: str | None  # the provider's message id
    status: str
    error_code: int | None
    at: int


@dataclass(frozen=True, slots=True)
class TickInput:
    at: int


Input = EffectInput | AckInput | DeliveryInput | TickInput


def _dump(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()


def effect_input(record: bytes, at: int) -> bytes:
    """A notification record (:func:`worker.ledgers.effect_record`) as a notifier input,
    without parsing it again."""
    return b'{"effect":' + record.strip() + b',"at":' + str(int(at)).encode() + b"}"


def ack_input(obligation_id: str, level: int, person: str, at: int, via: str = "api") -> bytes:
    check_ack(level, person)
    return _dump(
        {
            "ack": {
                "obligation_id": obligation_id,
                "level": level,
                "person": person,
                "at": int(at),
                "via": via,
            }
        }
    )


def delivery_input(
    key: str | None, sid: str | None, status: str, error_code: int | None, at: int
) -> bytes:
    if not key and not sid:
        raise ValueError("a delivery report needs the message key or the provider's id")
    return _dump(
        {
            "delivery": {
                "key": key,
                "sid": sid,
                "status": status,
                "error_code": error_code,
                "at": int(at),
            }
        }
    )


def tick_input(at: int) -> bytes:
    return _dump({"tick": int(at)})


def check_ack(level: object, person: object) -> None:
    """Raises ValueError naming the field when an acknowledgement's level or person is bad."""
    if not isinstance(level, int) or isinstance(level, bool) or not 1 <= level <= 9:
        raise ValueError(f"level: expected an integer from 1 to 9, got {level!r}")
    if (
        not isinstance(person, str)
        or not person
        or len(person) > 64
        or not set(person) <= _PERSON_CHARS
    ):
        raise ValueError(f"person: expected a roster person id, got {person!r}")


def obligation_of(message_key: str) -> str:
    """The obligation id in a message key ``obligation|step|L<level>|person|attempt``."""
    parts = message_key.rsplit("|", 4)
    if len(parts) != 5 or not parts[0]:
        raise ValueError(f"not a message key: {message_key!r}")
    return parts[0]


def _int(value: Any, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InputError(f"{what}: expected an integer, got {value!r}")
    return value


def _effect(data: Any) -> Effect:
    if not isinstance(data, dict):
        raise InputError("effect: expected an object")
    try:
        return Effect(**{name: data[name] for name in Effect._fields if name in data})
    except TypeError as exc:
        raise InputError(f"effect: {exc}") from None


def split_inputs(raw: bytes) -> list[bytes]:
    """The inputs a record holds: itself, or the items of a ``{"batch": […]}`` record, in
    order (raises :class:`InputError` for a batch that is not a list of objects)."""
    if not raw.startswith(b'{"batch":'):
        return [raw]
    try:
        items = orjson.loads(raw)["batch"]
    except (orjson.JSONDecodeError, KeyError, TypeError) as exc:
        raise InputError(f"not a batch of inputs: {exc}") from None
    if not isinstance(items, list) or not all(isinstance(item, dict) for item in items):
        raise InputError("not a batch of inputs: expected a list of objects")
    return [orjson.dumps(item) for item in items]


def decode_input(raw: bytes) -> Input:
    """One record of the inputs topic (raises :class:`InputError`)."""
    try:
        record = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(f"not valid JSON: {exc}") from None
    if not isinstance(record, dict):
        raise InputError("expected a JSON object")
    if "tick" in record:
        return TickInput(_int(record["tick"], "tick"))
    if "effect" in record:
        effect = _effect(record["effect"])
        if not isinstance(effect.obligation_id, str) or not isinstance(effect.due_at, int):
            raise InputError("effect: obligation_id and due_at are required")
        return EffectInput(effect, _int(record.get("at", effect.at), "at"))
    if "ack" in record:
        a = record["ack"]
        if not isinstance(a, dict) or not isinstance(a.get("obligation_id"), str):
            raise InputError("ack: expected an object with obligation_id")
        try:
            check_ack(a.get("level"), a.get("person"))
        except ValueError as exc:
            raise InputError(f"ack: {exc}") from None
        return AckInput(
            a["obligation_id"], a["level"], a["person"], _int(a.get("at"), "at"), str(a.get("via"))
        )
    if "delivery" in record:
        d = record["delivery"]
        if not isinstance(d, dict) or not isinstance(d.get("status"), str):
            raise InputError("delivery: expected an object with a status")
        key, sid = d.get("key"), d.get("sid")
        if not (isinstance(key, str) and key) and not (isinstance(sid, str) and sid):
            raise InputError("delivery: needs key or sid")
        code = d.get("error_code")
        return DeliveryInput(
            key if isinstance(key, str) and key else None,
            sid if isinstance(sid, str) and sid else None,
            d["status"].lower(),
            code if isinstance(code, int) and not isinstance(code, bool) else None,
            _int(d.get("at"), "at"),
        )
    raise InputError("expected {'effect': …}, {'ack': …}, {'delivery': …} or {'tick': …}")


def effect_from_record(raw: bytes) -> Effect:
    """An effect from its notifications-topic record (:func:`worker.ledgers.effect_record`)."""
    data: dict[str, Any] = json.loads(raw)
    return Effect(**{name: data[name] for name in Effect._fields})
