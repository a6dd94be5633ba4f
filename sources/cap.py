"""CAP 1.2 alerts (``application/cap+xml``) -> ``incident.reported`` / ``incident.updated``.

Parsing is safe: defusedxml, with any DTD refused outright (CAP has none), so entity bombs
("billion laughs") and external entities are rejected before anything is expanded or
fetched. Accepted: an ``<alert>`` in the CAP 1.2 namespace (any prefix, e.g. ``cap:alert``),
alone or inside an EDXL-DE 1.0 distribution (one event per embedded alert). Refused with the
reason: CAP 1.0/1.1, ``<alert>`` in another namespace, Atom index feeds, non-XML.

Mapping (docs/integrations.md has the table):

- ``status``: only ``Actual``; Exercise, System, Test and Draft are not real and are refused.
- ``msgType``: ``Alert`` -> ``incident.reported`` with ``incident_id`` = ``identifier``;
  ``Update`` -> ``incident.updated`` with ``incident_id`` = the identifier of the **earliest**
  entry of ``references`` (the original alert; the first listed on a tie), so updates and
  cancels land on the incident the alert opened; ``Cancel`` -> ``incident.updated`` with
  severity ``IV`` and no casualty figures, which cancels the incident's pending duties (all
  bundled rules need severity I/II or casualties), or refused with ``on_cancel="reject"``;
  ``Ack`` and ``Error`` are refused.
- ``severity``: Extreme -> I, Severe -> II, Moderate -> III, Minor/Unknown -> IV; the highest
  over the ``<info>`` blocks. ``urgency`` and ``certainty`` are not used.
- ``occurred_at``: Alert: the preferred info's ``onset``, else its ``effective``, else
  ``sent``. Update/Cancel: ``onset`` if given, else the original alert's ``sent`` from
  ``references``; never the update's own ``effective``/``sent``, which would move the
  incident's windows to the time of the update.
- ``title``: the preferred info's ``headline``, else its ``event``; the preferred info is the
  first in Simplified Chinese (zh-CN, zh-Hans), else Chinese, else the first. A Cancel's title
  is ``[CAP Cancel] `` + headline, note, or the cancelled alert's identifier.
- ``event_id`` = ``<source>:cap:<sender>:<identifier>`` (a CAP message never changes, so a
  resend is the same event). ``received_at`` is not used: times come from the message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as SafeET
from defusedxml import (
    DefusedXmlException,
    DTDForbidden,
    EntitiesForbidden,
    ExternalReferenceForbidden,
)

from schemas.events import INSTANT_RE
from sources.common import AdapterError, clip, stable_id

NAME = "cap"
CAP12_NS = "urn:oasis:names:tc:emergency:cap:1.2"
EDXL_DE_NS = "urn:oasis:names:tc:emergency:EDXL:DE:1.0"
ATOM_NS = "http://www.w3.org/2005/Atom"
#: Namespaces of the CAP versions before 1.2, refused by name.
OLD_CAP_NS = {
    "urn:oasis:names:tc:emergency:cap:1.1": "CAP 1.1",
    "urn:oasis:names:tc:emergency:cap:1.0": "CAP 1.0",
    "http://www.incident.com/cap/1.0": "CAP 1.0",
}
#: CAP severity -> govclock severity (I 特别重大 … IV 一般).
SEVERITY_MAP = {"Extreme": "I", "Severe": "II", "Moderate": "III", "Minor": "IV", "Unknown": "IV"}
CANCEL_SEVERITY = "IV"
STATUSES = ("Actual", "Exercise", "System", "Test", "Draft")
MSG_TYPES = ("Alert", "Update", "Cancel", "Ack", "Error")
SCOPES = ("Public", "Restricted", "Private")
CancelPolicy = Literal["downgrade", "reject"]

_SEVERITY_ORDER = ("I", "II", "III", "IV")


def _split(tag: str) -> tuple[str, str]:
    if tag.startswith("{"):
        ns, _, local = tag[1:].partition("}")
        return ns, local
    return "", tag


def _parse(payload: Any) -> Element:
    if isinstance(payload, bytes | bytearray | memoryview):
        data: bytes | str = bytes(payload)
    elif isinstance(payload, str):
        data = payload
    else:
        raise AdapterError(
            f"{NAME}: expected an XML document (application/cap+xml), got {type(payload).__name__}"
        )
    if not data.strip():
        raise AdapterError(f"{NAME}: empty body")
    try:
        root: Element = SafeET.fromstring(
            data, forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except DTDForbidden:
        raise AdapterError(
            f"{NAME}: the document has a DOCTYPE; CAP has none, and DTDs (entity bombs, "
            "external entities) are refused unparsed"
        ) from None
    except (EntitiesForbidden, ExternalReferenceForbidden):
        raise AdapterError(f"{NAME}: entity declarations are refused") from None
    except DefusedXmlException as exc:
        raise AdapterError(f"{NAME}: unsafe XML refused ({type(exc).__name__})") from None
    except ParseError as exc:
        raise AdapterError(f"{NAME}: not well-formed XML ({exc})") from None
    return root


def _alerts(root: Element) -> list[tuple[str, Element]]:
    ns, local = _split(root.tag)
    if ns == CAP12_NS and local == "alert":
        return [("alert", root)]
    if ns == EDXL_DE_NS and local == "EDXLDistribution":
        found: list[tuple[str, Element]] = []
        objects = root.findall(f"{{{EDXL_DE_NS}}}contentObject")
        for i, obj in enumerate(objects):
            holder = obj.find(f"{{{EDXL_DE_NS}}}xmlContent/{{{EDXL_DE_NS}}}embeddedXMLContent")
            for child in [] if holder is None else list(holder):
                cns, clocal = _split(child.tag)
                if cns == CAP12_NS and clocal == "alert":
                    found.append((f"EDXLDistribution.contentObject[{i}].alert", child))
                elif clocal == "alert":
                    _refuse_alert_ns(cns, f"EDXLDistribution.contentObject[{i}]")
        if not found:
            raise AdapterError(f"{NAME}: the EDXL-DE distribution carries no CAP 1.2 alert")
        return found
    if ns == ATOM_NS and local == "feed":
        raise AdapterError(
            f"{NAME}: an Atom feed, not a CAP alert; post each entry's CAP 1.2 document instead"
        )
    if local == "alert":
        _refuse_alert_ns(ns, "")
    raise AdapterError(
        f"{NAME}: root element <{local}> (namespace {ns or 'none'!r}) is not a CAP 1.2 "
        "<alert> nor an EDXL-DE distribution"
    )


def _refuse_alert_ns(ns: str, where: str) -> None:
    where = f"{where}: " if where else ""
    if ns in OLD_CAP_NS:
        raise AdapterError(
            f"{NAME}: {where}{OLD_CAP_NS[ns]} (namespace {ns}) is not supported; send CAP "
            f"1.2 ({CAP12_NS})"
        )
    raise AdapterError(
        f"{NAME}: {where}<alert> in namespace {ns or 'none'!r} is not CAP 1.2; expected {CAP12_NS}"
    )


def _text(el: Element, name: str) -> str | None:
    child = el.find(f"{{{CAP12_NS}}}{name}")
    if child is None or child.text is None or not child.text.strip():
        return None
    return child.text.strip()


def _required(el: Element, name: str, where: str) -> str:
    value = _text(el, name)
    if value is not None:
        return value
    for child in el:
        ns, local = _split(child.tag)
        if local == name and ns != CAP12_NS:
            raise AdapterError(
                f"{NAME}: {where}.{name} is in namespace {ns or 'none'!r}, not CAP 1.2's"
            )
    raise AdapterError(f"{NAME}: {where}.{name} missing (required by CAP 1.2)")


def _time(value: str, where: str) -> str:
    if not INSTANT_RE.match(value):
        raise AdapterError(
            f"{NAME}: {where} {value!r} is not a date-time with an offset "
            "(CAP: 2026-03-09T14:20:00+08:00)"
        )
    return value


def _lang_rank(info: Element) -> int:
    lang = (_text(info, "language") or "en-US").lower()  # CAP's default language is en-US
    if lang in ("zh-cn", "zh-sg") or lang.startswith("zh-hans"):
        return 0
    if lang == "zh" or lang.startswith("zh-"):
        return 1
    return 2


def _original(alert: Element, where: str) -> tuple[str, str]:
    """(identifier, sent) of the earliest message named in ``references``."""
    text = _text(alert, "references")
    if text is None:
        raise AdapterError(
            f"{NAME}: {where}.references is empty; an Update or Cancel must name the alert "
            "it updates (sender,identifier,sent)"
        )
    entries: list[tuple[datetime, int, str, str]] = []
    for pos, entry in enumerate(text.split()):
        parts = entry.split(",")
        if len(parts) != 3 or not all(parts):
            raise AdapterError(
                f"{NAME}: {where}.references entry {entry!r} is not sender,identifier,sent"
            )
        sent = _time(parts[2], f"{where}.references entry {entry!r}: sent")
        at = datetime.fromisoformat(sent.replace("Z", "+00:00").replace("z", "+00:00"))
        entries.append((at, pos, parts[1], sent))
    _, _, identifier, sent = min(entries)
    return identifier, sent


def _alert_event(
    alert: Element, where: str, *, unit: str, source: str, on_cancel: CancelPolicy
) -> dict[str, Any]:
    identifier = _required(alert, "identifier", where)
    sender = _required(alert, "sender", where)
    sent = _time(_required(alert, "sent", where), f"{where}.sent")
    status = _required(alert, "status", where)
    msg_type = _required(alert, "msgType", where)
    scope = _required(alert, "scope", where)
    if status not in STATUSES:
        raise AdapterError(f"{NAME}: {where}.status {status!r} is not one of {', '.join(STATUSES)}")
    if status != "Actual":
        raise AdapterError(
            f"{NAME}: {where}.status is {status!r}; only Actual alerts are real (Exercise, "
            "System, Test and Draft are not recorded)"
        )
    if msg_type not in MSG_TYPES:
        raise AdapterError(
            f"{NAME}: {where}.msgType {msg_type!r} is not one of {', '.join(MSG_TYPES)}"
        )
    if msg_type in ("Ack", "Error"):
        raise AdapterError(
            f"{NAME}: {where}.msgType is {msg_type!r}, a reply about a message, not about an "
            "incident"
        )
    if scope not in SCOPES:
        raise AdapterError(f"{NAME}: {where}.scope {scope!r} is not one of {', '.join(SCOPES)}")
    if msg_type == "Cancel" and on_cancel == "reject":
        raise AdapterError(
            f"{NAME}: {where}.msgType is 'Cancel', which this source is configured not to "
            "record; send the incident's corrected state as an incident.updated instead"
        )

    infos = alert.findall(f"{{{CAP12_NS}}}info")
    if not infos and msg_type != "Cancel":
        raise AdapterError(
            f"{NAME}: {where} has no <info>; an {msg_type} needs one for its event, severity "
            "and times"
        )
    severities: list[str] = []
    for i, info in enumerate(infos):
        at = f"{where}.info[{i}]"
        _required(info, "event", at)
        value = _required(info, "severity", at)
        if value not in SEVERITY_MAP:
            raise AdapterError(
                f"{NAME}: {at}.severity {value!r} is not one of {', '.join(SEVERITY_MAP)}"
            )
        severities.append(SEVERITY_MAP[value])
    chosen = min(enumerate(infos), key=lambda p: (_lang_rank(p[1]), p[0]))[1] if infos else None
    info_at = f"{where}.info[{infos.index(chosen)}]" if chosen is not None else where

    onset = _text(chosen, "onset") if chosen is not None else None
    if msg_type == "Alert":
        incident_id = identifier
        effective = _text(chosen, "effective") if chosen is not None else None
        if onset is not None:
            occurred_at = _time(onset, f"{info_at}.onset")
        elif effective is not None:
            occurred_at = _time(effective, f"{info_at}.effective")
        else:
            occurred_at = sent
    else:
        incident_id, original_sent = _original(alert, where)
        occurred_at = _time(onset, f"{info_at}.onset") if onset is not None else original_sent

    headline = None
    if chosen is not None:
        headline = _text(chosen, "headline") or _text(chosen, "event")
    if msg_type == "Cancel":
        severity = CANCEL_SEVERITY
        title = "[CAP Cancel] " + (headline or _text(alert, "note") or f"alert {incident_id}")
    else:
        severity = min(severities, key=_SEVERITY_ORDER.index)
        title = headline or ""

    return {
        "event_id": stable_id(source, NAME, sender, identifier),
        "type": "incident.reported" if msg_type == "Alert" else "incident.updated",
        "unit": unit,
        "source": source,
        "incident_id": incident_id,
        "occurred_at": occurred_at,
        "title": clip(title),
        "severity": severity,
    }


def to_events(
    payload: Any,
    *,
    unit: str,
    source: str,
    received_at: int,
    on_cancel: CancelPolicy = "downgrade",
) -> list[dict[str, Any]]:
    root = _parse(payload)
    return [
        _alert_event(alert, where, unit=unit, source=source, on_cancel=on_cancel)
        for where, alert in _alerts(root)
    ]
