"""The event contract: examples, field-level errors, times, and the exported JSON Schema files."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, get_args

import pytest
import yaml

from schemas.events import (
    EVENT_MODELS,
    EVENT_TYPES,
    REF_FIELDS,
    TIME_FIELD,
    Event,
    EventError,
    PublicationKind,
    Refs,
    event_time,
    parse_event,
    parse_event_json,
)
from schemas.export import (
    DEFAULT_DIR,
    UNION_FILE,
    build_json_schemas,
    check_json_schemas,
    render,
    schema_file_name,
    write_json_schemas,
)

try:
    import jsonschema
except ImportError:  # not a dependency: the structural fallback below is used instead
    jsonschema = None

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "events.md"
PACKS = ROOT / "deadlines" / "packs"
CST = timezone(timedelta(hours=8))

#: One realistic, valid event per type (a Shanghai unit, spring 2026).
EXAMPLES: dict[str, dict[str, Any]] = {
    "incident.reported": {
        "event_id": "ims-I-2026-031-1",
        "type": "incident.reported",
        "unit": "sh-yingji",
        "source": "incident-system",
        "incident_id": "I-2026-031",
        "occurred_at": "2026-03-09T14:20:00+08:00",
        "title": "宝山区仓库火灾",
        "severity": "II",
        "deaths": 12,
        "injured": 8,
    },
    "incident.updated": {
        "event_id": "ims-I-2026-031-2",
        "type": "incident.updated",
        "unit": "sh-yingji",
        "incident_id": "I-2026-031",
        "occurred_at": "2026-03-09T14:20:00+08:00",
        "title": "宝山区仓库火灾（续报）",
        "severity": "I",
        "deaths": 31,
        "injured": 57,
        "social_impact": "significant",
    },
    "document.issued": {
        "event_id": "oa-沪府办〔2026〕12号",
        "type": "document.issued",
        "unit": "sh-gov",
        "document_id": "沪府办〔2026〕12号",
        "issued_at": "2026-02-12",
        "kind": "policy",
        "disclosure": "proactive",
        "title": "上海市人民政府办公厅关于进一步优化营商环境的若干措施",
    },
    "document.published": {
        "event_id": "cms-sh-P-0001",
        "type": "document.published",
        "unit": "sh-yingji",
        "source": "cms-sh",
        "publication_id": "P-0001",
        "published_at": "2026-03-09T16:05:00+08:00",
        "kind": "press_release",
        "channel": "portal",
        "url": "https://yjglj.sh.example/xwfb/0001.html",
        "refs": {"incident_id": "I-2026-031"},
        "title": "关于宝山区仓库火灾的情况通报",
    },
    "decision.made": {
        "event_id": "zf-沪市监处〔2026〕0031号",
        "type": "decision.made",
        "unit": "sh-shichang",
        "decision_id": "沪市监处〔2026〕0031号",
        "decided_at": "2026-03-02",
        "kind": "penalty",
    },
    "org.changed": {
        "event_id": "bb-JG-2026-007",
        "type": "org.changed",
        "unit": "sh-jiaowei",
        "change_id": "JG-2026-007",
        "completed_at": "2026-03-01",
    },
    "application.received": {
        "event_id": "ysq-A-2026-0042-received",
        "type": "application.received",
        "unit": "sh-gov",
        "application_id": "A-2026-0042",
        "received_at": "2026-03-02T09:30:00+08:00",
    },
    "application.correction_requested": {
        "event_id": "ysq-A-2026-0042-bz",
        "type": "application.correction_requested",
        "unit": "sh-gov",
        "application_id": "A-2026-0042",
        "at": "2026-03-04",
    },
    "application.corrected": {
        "event_id": "ysq-A-2026-0042-bzok",
        "type": "application.corrected",
        "unit": "sh-gov",
        "application_id": "A-2026-0042",
        "at": "2026-03-09",
    },
    "application.consultation_started": {
        "event_id": "ysq-A-2026-0042-zq1",
        "type": "application.consultation_started",
        "unit": "sh-gov",
        "application_id": "A-2026-0042",
        "at": "2026-03-10",
    },
    "application.consultation_ended": {
        "event_id": "ysq-A-2026-0042-zq2",
        "type": "application.consultation_ended",
        "unit": "sh-gov",
        "application_id": "A-2026-0042",
        "at": "2026-03-20T11:00:00+08:00",
    },
    "application.extended": {
        "event_id": "ysq-A-2026-0042-yc",
        "type": "application.extended",
        "unit": "sh-gov",
        "application_id": "A-2026-0042",
        "at": "2026-04-01",
        "working_days": 20,
    },
    "opinion.detected": {
        "event_id": "yq-O-2026-0117",
        "type": "opinion.detected",
        "unit": "sh-yingji",
        "source": "yuqing-monitor",
        "opinion_id": "O-2026-0117",
        "detected_at": "2026-03-09T18:40:00+08:00",
        "topic": "rumor",
        "title": "网传宝山仓库火灾致数十人遇难",
        "url": "https://weibo.example/status/5001",
        "refs": {"incident_id": "I-2026-031"},
    },
    "feed.item": {
        "event_id": "feed:sh-gov-news:0f7c0b6c1e2d4f3a8b9c0d1e2f3a4b5c",
        "type": "feed.item",
        "unit": "sh-gov",
        "source": "feed-poller",
        "source_id": "sh-gov-news",
        "item_id": "https://www.shanghai.gov.cn/nw4411/20260309/0001.html",
        "title": "市政府新闻发布会：宝山区仓库火灾处置情况",
        "summary": "3月9日下午，市政府新闻办举行新闻发布会。",
        "link": "https://www.shanghai.gov.cn/nw4411/20260309/0001.html",
        "author": "上海发布",
        "published_at": "2026-03-09",
        "published_raw": "Mon, 09 Mar 2026 00:00:00 +0800",
        "published_precision": "day",
        "seen_at": "2026-03-09T18:02:11+08:00",
    },
    "feed.polled": {
        "event_id": "feed-poll:sh-gov-news:1773050531",
        "type": "feed.polled",
        "unit": "sh-gov",
        "source_id": "sh-gov-news",
        "at": "2026-03-09T18:02:11+08:00",
        "outcome": "ok",
        "http_status": 200,
        "items": 20,
    },
}

#: Time fields that also take a bare date (the rest need a timestamp with an offset).
DATE_ALLOWED = {"issued_at", "published_at", "decided_at", "completed_at", "received_at", "at"}


#: Types whose time field is named like a date-allowed one but needs a timestamp (a poll).
INSTANT_ONLY_TYPES = {"feed.polled", "feed.item"}


def _with(event_type: str, **changes: Any) -> dict[str, Any]:
    data = dict(EXAMPLES[event_type])
    for key, value in changes.items():
        if value is _DROP:
            data.pop(key)
        else:
            data[key] = value
    return data


_DROP = object()


def _fields(exc: pytest.ExceptionInfo[EventError]) -> list[str]:
    return [e.field for e in exc.value.errors]


def _doc_events() -> list[dict[str, Any]]:
    blocks = re.findall(r"```json\n(.*?)```", DOC.read_text(encoding="utf-8"), re.S)
    return [json.loads(b) for b in blocks]


# ---------------------------------------------------------------------------------------
# (a) The committed schema files are current


def test_committed_schema_files_match_a_fresh_build() -> None:
    stale = check_json_schemas(DEFAULT_DIR)
    assert stale == [], (
        f"schemas/jsonschema/ is out of date ({', '.join(stale)}): run `make schemas` "
        "(govclock schemas --write) and commit the result"
    )


def test_one_file_per_event_type_plus_the_union() -> None:
    built = build_json_schemas()
    assert set(built) == {UNION_FILE} | {f"{t}.schema.json" for t in EVENT_TYPES}
    for name, schema in built.items():
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://govclock.example/schemas/{name}"
        assert schema["title"] and schema["description"]
    for event_type in EVENT_TYPES:
        schema = built[schema_file_name(event_type)]
        assert schema["properties"]["type"]["const"] == event_type
        assert schema["additionalProperties"] is False


def test_write_and_check_report_missing_stale_and_extra(tmp_path: Path) -> None:
    assert check_json_schemas(tmp_path / "absent") == sorted(build_json_schemas())
    paths = write_json_schemas(tmp_path)
    assert sorted(p.name for p in paths) == sorted(build_json_schemas())
    assert check_json_schemas(tmp_path) == []
    text = (tmp_path / UNION_FILE).read_text(encoding="utf-8")
    assert text.endswith("}\n") and text == render(json.loads(text))

    (tmp_path / "org.changed.schema.json").unlink()
    (tmp_path / "opinion.detected.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "incident.created.schema.json").write_text("{}\n", encoding="utf-8")
    (tmp_path / "README.txt").write_text("not a schema\n", encoding="utf-8")
    assert check_json_schemas(tmp_path) == [
        "incident.created.schema.json",
        "opinion.detected.schema.json",
        "org.changed.schema.json",
    ]
    write_json_schemas(tmp_path)
    assert check_json_schemas(tmp_path) == []
    assert (tmp_path / "README.txt").exists()
    assert not (tmp_path / "incident.created.schema.json").exists()


def test_build_is_deterministic() -> None:
    first = {n: render(s) for n, s in build_json_schemas().items()}
    second = {n: render(s) for n, s in build_json_schemas().items()}
    assert first == second


# ---------------------------------------------------------------------------------------
# (b) One valid example per type


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_example_parses(event_type: str) -> None:
    data = EXAMPLES[event_type]
    event = parse_event(data)
    assert event.type == event_type
    assert isinstance(event, EVENT_MODELS[event_type])
    assert parse_event_json(json.dumps(data, ensure_ascii=False)) == event
    assert parse_event_json(json.dumps(data).encode("utf-8")) == event
    for key, value in data.items():
        if key != "refs":
            assert getattr(event, key) is not None
        else:
            assert getattr(event, key).model_dump(exclude_none=True) == value


def test_example_keeps_chinese_ids_and_titles() -> None:
    event = parse_event(EXAMPLES["document.issued"])
    assert event.document_id == "沪府办〔2026〕12号"  # type: ignore[union-attr]
    assert event.title.startswith("上海市人民政府办公厅")  # type: ignore[union-attr]


def test_strings_are_trimmed_and_refs_default_to_empty() -> None:
    data = _with("document.published", refs=_DROP, publication_id="  P-0001 ")
    event = parse_event(data)
    assert event.publication_id == "P-0001"  # type: ignore[union-attr]
    assert event.refs == Refs()  # type: ignore[union-attr]


def test_events_are_frozen() -> None:
    event = parse_event(EXAMPLES["incident.reported"])
    with pytest.raises(ValueError):
        event.severity = "IV"  # type: ignore[misc,union-attr]


# ---------------------------------------------------------------------------------------
# (c) Field-level errors, by dotted path

BAD: dict[str, tuple[Any, list[str]]] = {
    "bad severity": (_with("incident.reported", severity="2"), ["severity"]),
    "severity as a number": (_with("incident.reported", severity=2), ["severity"]),
    "missing field": (_with("document.published", url=_DROP), ["url"]),
    "missing nested id": (_with("application.received", application_id=_DROP), ["application_id"]),
    "naive timestamp": (
        _with("incident.reported", occurred_at="2026-03-09T14:20:00"),
        ["occurred_at"],
    ),
    "naive timestamp in a date-or-instant field": (
        _with("document.published", published_at="2026-03-09T16:05:00"),
        ["published_at"],
    ),
    "bare date where a timestamp is needed": (
        _with("opinion.detected", detected_at="2026-03-09"),
        ["detected_at"],
    ),
    "not a date at all": (_with("document.issued", issued_at="2月12日"), ["issued_at"]),
    "unknown type": (_with("incident.reported", type="incident.created"), ["type"]),
    "missing type": (_with("incident.reported", type=_DROP), ["type"]),
    "unknown refs key": (
        _with("document.published", refs={"incidentId": "I-2026-031"}),
        ["refs.incidentId"],
    ),
    "refs key an opinion may not carry": (
        _with("opinion.detected", refs={"document_id": "沪府办〔2026〕12号"}),
        ["refs.document_id"],
    ),
    "blank refs id": (
        _with("document.published", refs={"incident_id": "  "}),
        ["refs.incident_id"],
    ),
    "refs not an object": (_with("document.published", refs="I-2026-031"), ["refs"]),
    "unknown top-level field": (_with("decision.made", decision_title="x"), ["decision_title"]),
    "non-object": (["incident.reported"], ["(event)"]),
    "null": (None, ["(event)"]),
    "working_days 21": (_with("application.extended", working_days=21), ["working_days"]),
    "working_days 0": (_with("application.extended", working_days=0), ["working_days"]),
    "negative deaths": (_with("incident.reported", deaths=-1), ["deaths"]),
    "several fields at once": (
        _with("incident.reported", severity="V", occurred_at="2026-03-09", title=_DROP),
        ["occurred_at", "title", "severity"],
    ),
}


@pytest.mark.parametrize("case", list(BAD))
def test_field_level_errors(case: str) -> None:
    data, fields = BAD[case]
    with pytest.raises(EventError) as exc:
        parse_event(data)
    assert _fields(exc) == fields
    assert all(e.message for e in exc.value.errors)
    for field in fields:
        assert field in str(exc.value)
    # The same from JSON text.
    with pytest.raises(EventError) as exc_json:
        parse_event_json(json.dumps(data, ensure_ascii=False))
    assert _fields(exc_json) == fields


@pytest.mark.parametrize("text", ["{", "not json", b"\xff\xfe{", ""])
def test_invalid_json_text(text: str | bytes) -> None:
    with pytest.raises(EventError) as exc:
        parse_event_json(text)
    assert _fields(exc) == ["(event)"]
    assert "not valid JSON" in exc.value.errors[0].message


def test_unknown_type_lists_the_known_ones() -> None:
    with pytest.raises(EventError) as exc:
        parse_event(_with("incident.reported", type="incident.created"))
    message = exc.value.errors[0].message
    assert "'incident.created'" in message
    assert all(t in message for t in EVENT_TYPES)


# ---------------------------------------------------------------------------------------
# (d) Date-only versus timestamps


def _time_of(event_type: str, value: Any) -> Any:
    field = TIME_FIELD[event_type]
    return getattr(parse_event(_with(event_type, **{field: value})), field)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_bare_date_stays_a_date_where_allowed(event_type: str) -> None:
    field = TIME_FIELD[event_type]
    if field in DATE_ALLOWED and event_type not in INSTANT_ONLY_TYPES:
        value = _time_of(event_type, "2026-02-12")
        assert type(value) is date
        assert value == date(2026, 2, 12)
    else:
        with pytest.raises(EventError) as exc:
            parse_event(_with(event_type, **{field: "2026-02-12"}))
        assert _fields(exc) == [field]


@pytest.mark.parametrize("event_type", EVENT_TYPES)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-02-12T00:00:00+08:00", datetime(2026, 2, 12, tzinfo=CST)),
        ("2026-02-12T09:30:00+08:00", datetime(2026, 2, 12, 9, 30, tzinfo=CST)),
        ("2026-02-12T01:30:00Z", datetime(2026, 2, 12, 1, 30, tzinfo=UTC)),
        ("2026-02-11T16:00:00.250Z", datetime(2026, 2, 11, 16, 0, 0, 250000, tzinfo=UTC)),
    ],
)
def test_rfc3339_timestamp_stays_a_datetime(event_type: str, text: str, expected: datetime) -> None:
    value = _time_of(event_type, text)
    assert isinstance(value, datetime)
    assert value.tzinfo is not None
    assert value == expected
    assert value.utcoffset() == expected.utcoffset()


@pytest.mark.parametrize("field", ["issued_at", "published_at"])
def test_midnight_with_offset_is_an_instant_not_a_date(field: str) -> None:
    event_type = "document.issued" if field == "issued_at" else "document.published"
    value = _time_of(event_type, "2026-02-12T00:00:00+08:00")
    assert type(value) is datetime
    assert (value.hour, value.minute, value.utcoffset()) == (0, 0, timedelta(hours=8))
    assert type(_time_of(event_type, "2026-02-12")) is date


def test_event_time_reads_the_time_field() -> None:
    for event_type, data in EXAMPLES.items():
        event = parse_event(data)
        assert event_time(event) == getattr(event, TIME_FIELD[event_type])


def test_naive_midnight_is_rejected_like_any_naive_timestamp() -> None:
    with pytest.raises(EventError):
        parse_event(_with("document.issued", issued_at="2026-02-12T00:00:00"))


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(20260212, id="number-yyyymmdd"),
        pytest.param("20260212", id="string-yyyymmdd"),
        pytest.param(1772691600, id="epoch-seconds"),
    ],
)
def test_non_rfc3339_times_are_rejected(value: Any) -> None:
    with pytest.raises(EventError):
        parse_event(_with("document.published", published_at=value))


def test_unknown_field_named_date_is_reported_by_name() -> None:
    with pytest.raises(EventError) as exc:
        parse_event(_with("decision.made", date="2026-03-02"))
    assert _fields(exc) == ["date"]


# ---------------------------------------------------------------------------------------
# (e) Examples against the exported JSON Schema


def _required(model: type[Any]) -> list[str]:
    return [name for name, f in model.model_fields.items() if f.is_required()]


def _structural_check(example: dict[str, Any], schema: dict[str, Any]) -> None:
    """Without ``jsonschema``: required fields, closed objects, the type constant."""
    assert set(schema["required"]) <= set(example)
    assert set(example) <= set(schema["properties"])
    assert schema["properties"]["type"]["const"] == example["type"]
    if "refs" in example:
        ref = schema["properties"]["refs"]["$ref"]
        refs_schema = schema["$defs"][ref.rsplit("/", 1)[1]]
        assert refs_schema["additionalProperties"] is False
        assert set(example["refs"]) <= set(refs_schema["properties"])


def _validator(schema: dict[str, Any]) -> Any:
    assert jsonschema is not None
    cls = jsonschema.Draft202012Validator
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_schema_required_fields_match_the_model(event_type: str) -> None:
    built = build_json_schemas()
    model = EVENT_MODELS[event_type]
    assert built[schema_file_name(event_type)]["required"] == _required(model)
    union = built[UNION_FILE]
    assert union["$defs"][model.__name__]["required"] == _required(model)
    assert union["discriminator"]["mapping"][event_type] == f"#/$defs/{model.__name__}"


@pytest.mark.parametrize("event_type", EVENT_TYPES)
def test_example_validates_against_the_exported_schema(event_type: str) -> None:
    built = build_json_schemas()
    example = EXAMPLES[event_type]
    own = built[schema_file_name(event_type)]
    if jsonschema is None:
        _structural_check(example, own)
        return
    _validator(own).validate(example)
    _validator(built[UNION_FILE]).validate(example)


#: Cases the schema rejects without format checking (formats are annotations by default, and
#: the parser trims strings before checking lengths).
SCHEMA_ALSO_REJECTS = [
    c
    for c in BAD
    if "timestamp" not in c
    and "date" not in c
    and c not in ("blank refs id", "several fields at once")
]


def test_schema_rejects_what_the_parser_rejects() -> None:
    if jsonschema is None:
        pytest.skip("jsonschema is not installed (not a dependency); examples use the fallback")
    validator = _validator(build_json_schemas()[UNION_FILE])
    accepted = [case for case in SCHEMA_ALSO_REJECTS if validator.is_valid(BAD[case][0])]
    assert accepted == []


# ---------------------------------------------------------------------------------------
# (f) The union, the type list and the tables agree


def test_event_types_cover_every_union_member() -> None:
    members = get_args(get_args(Event)[0])
    tags = [get_args(m.model_fields["type"].annotation)[0] for m in members]
    assert tags == list(EVENT_TYPES)
    assert len(set(EVENT_TYPES)) == len(EVENT_TYPES)
    assert list(EVENT_MODELS) == list(EVENT_TYPES)
    assert set(EXAMPLES) == set(EVENT_TYPES)
    assert set(build_json_schemas()[UNION_FILE]["discriminator"]["mapping"]) == set(EVENT_TYPES)


def test_time_field_names_a_field_of_every_type() -> None:
    assert list(TIME_FIELD) == list(EVENT_TYPES)
    for event_type, field in TIME_FIELD.items():
        assert field in EVENT_MODELS[event_type].model_fields
        assert EVENT_MODELS[event_type].model_fields[field].is_required()


def test_ref_fields_are_the_refs_keys() -> None:
    assert tuple(Refs.model_fields) == REF_FIELDS


# ---------------------------------------------------------------------------------------
# docs/events.md stays true


def test_doc_examples_are_valid_events() -> None:
    events = _doc_events()
    assert len(events) >= 8
    built = build_json_schemas()
    for data in events:
        parse_event(data)
        if jsonschema is None:
            _structural_check(data, built[schema_file_name(data["type"])])
        else:
            _validator(built[UNION_FILE]).validate(data)


def test_doc_names_every_type_kind_and_rule() -> None:
    text = DOC.read_text(encoding="utf-8")
    for name in (*EVENT_TYPES, *get_args(PublicationKind), *REF_FIELDS):
        assert f"`{name}`" in text, f"docs/events.md does not mention `{name}`"
    for path in sorted(PACKS.glob("*.yaml")):
        pack = yaml.safe_load(path.read_text(encoding="utf-8"))
        for rule in pack.get("rules", []):
            assert f"`{rule['id']}`" in text, (
                f"docs/events.md does not describe rule `{rule['id']}` of {path.name}"
            )
