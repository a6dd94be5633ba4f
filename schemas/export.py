"""JSON Schema files for the event contract, generated from :mod:`schemas.events`.

The pydantic models are the source of truth; the files in ``schemas/jsonschema/`` (package
data) are what integrators read and validate against. ``govclock schemas --write`` (``make
schemas``) regenerates them; ``govclock schemas`` and the test suite check that the committed
files match a fresh build.

Files (draft 2020-12, each self-contained, ``$defs`` inside):

- ``event.schema.json``: any event, the union discriminated on ``type``;
- ``<type>.schema.json``: one per event type (``incident.reported.schema.json``, …).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from schemas.events import EVENT_ADAPTER, EVENT_MODELS, EVENT_TYPES

#: Where the generated files live (package data of ``schemas``).
DEFAULT_DIR = Path(__file__).resolve().parent / "jsonschema"

DIALECT = "https://json-schema.org/draft/2020-12/schema"
ID_BASE = "https://govclock.example/schemas/"
UNION_FILE = "event.schema.json"

_TIMES = (
    "Timestamps are RFC 3339 strings with an offset (2026-03-05T14:20:00+08:00); "
    "fields that also accept a bare date (2026-03-05, a day in Asia/Shanghai) say so."
)

#: One line per event type: what the sender is telling govclock.
DESCRIPTIONS: dict[str, str] = {
    "incident.reported": "An emergency incident was reported (突发事件). occurred_at is when it "
    "happened; severity is I 特别重大, II 重大, III 较大 or IV 一般.",
    "incident.updated": "New facts about a reported incident: a full snapshot (severity, "
    "casualties, social impact) that replaces the earlier one.",
    "document.issued": "An official document was issued (印发/成文); disclosure says whether it "
    "is to be disclosed proactively. issued_at may be a bare date.",
    "document.published": "Something was published (portal page, press release, press "
    "conference, reply, …). refs names what it is evidence for. published_at may be a bare "
    "date.",
    "decision.made": "An administrative licensing or penalty decision was made. decided_at may "
    "be a bare date.",
    "org.changed": "A change of functions or organisation was completed. completed_at may be a "
    "bare date.",
    "application.received": "A government-information disclosure application (依申请公开) was "
    "received. received_at may be a bare date.",
    "application.correction_requested": "The applicant was asked to correct the application "
    "(补正). at may be a bare date.",
    "application.corrected": "The corrected application was received. at may be a bare date.",
    "application.consultation_started": "Third-party consultation (征求第三方意见) started. at "
    "may be a bare date.",
    "application.consultation_ended": "Third-party consultation ended. at may be a bare date.",
    "application.extended": "The reply deadline was extended by working_days (approved, "
    "applicant told). at may be a bare date.",
    "opinion.detected": "A public-opinion hotspot (政务舆情) or rumour was detected. detected_at "
    "is a timestamp; refs.incident_id links it to an incident.",
    "feed.item": "An item seen in a feed source (RSS, Atom, JSON Feed, or pushed by a crawler). "
    "item_id is the dedupe key (guid, else link, else a hash); published_at is what the feed "
    "said (a timestamp, a bare date, or absent: never invented), published_precision how "
    "precise it is, published_raw the feed's own text; seen_at is a timestamp. Recommended "
    "event_id: feed:<source_id>:<first 32 hex digits of SHA-256(item_id)>.",
    "feed.polled": "One poll of a feed source: at is a timestamp; outcome is ok, not_modified, "
    "http_error, timeout, network_error, parse_error or blocked; items counts the items the "
    "response carried.",
}


def _schema_id(name: str) -> str:
    return ID_BASE + name


def schema_file_name(event_type: str) -> str:
    """The file that holds the schema of one event type."""
    return f"{event_type}.schema.json"


def _decorate(schema: dict[str, Any], name: str, title: str, description: str) -> dict[str, Any]:
    out: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": _schema_id(name),
        "title": title,
        "description": description,
    }
    out.update((k, v) for k, v in schema.items() if k not in out)
    return out


def build_json_schemas() -> dict[str, dict[str, Any]]:
    """File name -> JSON Schema: the union (``event.schema.json``) and one per event type."""
    missing = set(EVENT_TYPES) - set(DESCRIPTIONS)
    if missing:
        raise RuntimeError(f"schemas.export: no description for {sorted(missing)}")
    schemas: dict[str, dict[str, Any]] = {
        UNION_FILE: _decorate(
            EVENT_ADAPTER.json_schema(mode="validation"),
            UNION_FILE,
            "govclock event",
            "One event sent to govclock by a CMS webhook, incident system, feed or replay "
            "file: a JSON object discriminated on type. event_id is unique per event; a repeat "
            "is ignored. " + _TIMES,
        )
    }
    for event_type in EVENT_TYPES:
        name = schema_file_name(event_type)
        schemas[name] = _decorate(
            EVENT_MODELS[event_type].model_json_schema(mode="validation"),
            name,
            f"govclock event {event_type}",
            DESCRIPTIONS[event_type] + " " + _TIMES,
        )
    return schemas


def render(schema: dict[str, Any]) -> str:
    """The exact text of a schema file."""
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _existing(directory: Path) -> set[str]:
    if not directory.is_dir():
        return set()
    return {p.name for p in directory.iterdir() if p.is_file() and p.name.endswith(".json")}


def write_json_schemas(directory: Path = DEFAULT_DIR) -> list[Path]:
    """Write every schema file into ``directory`` (created if needed) and delete ``*.json``
    files there that the build no longer produces. Returns the paths of the schema files.
    Unchanged files are not rewritten."""
    directory.mkdir(parents=True, exist_ok=True)
    built = build_json_schemas()
    paths: list[Path] = []
    for name, schema in sorted(built.items()):
        path = directory / name
        text = render(schema)
        if not path.is_file() or path.read_text(encoding="utf-8") != text:
            path.write_text(text, encoding="utf-8")
        paths.append(path)
    for name in sorted(_existing(directory) - set(built)):
        (directory / name).unlink()
    return paths


def check_json_schemas(directory: Path = DEFAULT_DIR) -> list[str]:
    """Names of the files in ``directory`` that differ from a fresh build: missing, stale
    (different text) or extra (a ``*.json`` the build does not produce). Empty when current."""
    built = build_json_schemas()
    present = _existing(directory)
    differ: list[str] = []
    for name in sorted(set(built) | present):
        current = name in built and name in present
        if not current or (directory / name).read_text(encoding="utf-8") != render(built[name]):
            differ.append(name)
    return differ
