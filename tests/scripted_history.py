"""Scripted histories with times relative to "now" (tests/data/*.yaml), rendered into events.

A value that is exactly ``${now…}`` becomes an RFC 3339 instant (UTC) and ``${date:now…}``
the Asia/Shanghai date of that instant; ``now`` may be followed by signed terms such as
``-7h``, ``+4s``, ``-1d-2h`` (units d, h, m, s). Everything else is left as it is. So the
same file gives the same statuses whenever it is posted: a trigger 7 h ago with a 5-hour
window is missed, one 4 h ago is pending.

A history file has ``phases`` (see :class:`Phase`) and optionally a ``roster`` and a
``policy`` (written as YAML files for the worker, times rendered: :meth:`History.files`) and
``metrics`` (series → the least value each must reach).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import yaml

SHANGHAI = timezone(timedelta(hours=8))
DATA = Path(__file__).resolve().parent / "data"

_PLACEHOLDER = re.compile(r"\$\{(date:)?now((?:[+-]\d+[dhms])*)\}")
_TERM = re.compile(r"([+-])(\d+)([dhms])")
_SECONDS = {"d": 86400, "h": 3600, "m": 60, "s": 1}


def instant(offset: str, now: float) -> float:
    """``now`` moved by ``offset`` (e.g. ``-5h+4s``), in epoch seconds."""
    t = float(now)
    for sign, number, unit in _TERM.findall(offset):
        step = int(number) * _SECONDS[unit]
        t += step if sign == "+" else -step
    return t


def render_value(value: Any, now: float) -> Any:
    """``value`` with its placeholders filled in, recursively through lists and dicts."""
    if isinstance(value, dict):
        return {k: render_value(v, now) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, now) for v in value]
    if not isinstance(value, str):
        return value
    match = _PLACEHOLDER.fullmatch(value)
    if match is None:
        if "${" in value:
            raise ValueError(f"not a placeholder this renderer knows: {value!r}")
        return value
    t = instant(match.group(2), now)
    if match.group(1):
        return datetime.fromtimestamp(t, SHANGHAI).date().isoformat()
    return datetime.fromtimestamp(int(t), UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class Rejected:
    """An HTTP request that must be refused with ``status``."""

    content_type: str
    body: bytes
    status: int


@dataclass(frozen=True)
class Ack:
    """``POST /v1/obligations/{obligation}/ack`` with ``{"level", "person"}``."""

    obligation: str
    level: int
    person: str


@dataclass(frozen=True)
class Phase:
    """One step of a scripted history, as written in the file (times not yet rendered)."""

    name: str
    events: list[dict[str, Any]]
    rejected: list[Rejected] = field(default_factory=list)
    dead_letters: list[bytes] = field(default_factory=list)
    expect: dict[str, str] = field(default_factory=dict)
    acks: list[Ack] = field(default_factory=list)
    escalations: dict[str, str] = field(default_factory=dict)  # obligation id -> stage

    def render(self, now: float) -> list[dict[str, Any]]:
        """The events with their times relative to ``now`` (epoch seconds)."""
        rendered: list[dict[str, Any]] = render_value(self.events, now)
        return rendered


@dataclass(frozen=True)
class History:
    """A whole history file: its phases, the notifier's roster and policy (times not yet
    rendered) and the least values some series must reach."""

    phases: list[Phase]
    roster: dict[str, Any] | None = None
    policy: dict[str, Any] | None = None
    metrics: dict[str, float] = field(default_factory=dict)

    def files(self, now: float) -> dict[str, str]:
        """``roster.yaml`` and ``policy.yaml`` (those the file has), rendered at ``now``."""
        out = {}
        for name, data in (("roster.yaml", self.roster), ("policy.yaml", self.policy)):
            if data is not None:
                out[name] = yaml.safe_dump(
                    render_value(data, now), allow_unicode=True, sort_keys=False
                )
        return out


def _phase(raw: dict[str, Any]) -> Phase:
    return Phase(
        name=raw["name"],
        events=list(raw.get("events") or []),
        rejected=[
            Rejected(
                r["content_type"],
                r["body"].encode() * int(r.get("repeat", 1)),
                int(r["status"]),
            )
            for r in raw.get("rejected") or []
        ],
        dead_letters=[d.encode() for d in raw.get("dead_letters") or []],
        expect={str(k): str(v) for k, v in (raw.get("expect") or {}).items()},
        acks=[
            Ack(str(a["obligation"]), int(a["level"]), str(a["person"]))
            for a in raw.get("acks") or []
        ],
        escalations={str(k): str(v) for k, v in (raw.get("escalations") or {}).items()},
    )


def load(path: Path) -> History:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    return History(
        phases=[_phase(raw) for raw in data["phases"]],
        roster=data.get("roster"),
        policy=data.get("policy"),
        metrics={str(k): float(v) for k, v in (data.get("metrics") or {}).items()},
    )
