"""Prometheus metrics: every name, unit and label in one place.

One prefix (``govclock_``), base units (seconds, ratios), ``_total`` counters, bounded
labels only: rule ids, statuses, units (a configured set), event types, channels (the
policy's ``sms``/``voice``, not the provider), sources (configured names), reason classes —
never an obligation, incident or person, never a phone number. The registry is passed in
(tests use their own).

Counters and histograms are fed by the agents as things happen; the state of the ledgers
(open obligations, next deadlines, calendar assumptions) is read at scrape time by
:class:`LedgerCollector`, and the breach pages waiting for an acknowledgement by
:class:`EscalationCollector`, so they are always exact.
"""

from __future__ import annotations

import heapq
from collections import Counter as CounterOf
from collections.abc import Callable, Container, Iterable, Iterator, Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

PREFIX = "govclock"

#: Bounded reasons an input is refused (labels of ``govclock_events_rejected_total``).
REJECT_REASONS = (
    "invalid_json",
    "invalid_event",
    "signature",
    "too_large",
    "incomplete",
    "content_type",
)
#: Notification delivery states (labels of ``govclock_notifications_total``).
NOTIFICATION_STATES = ("sent", "delivered", "failed", "acknowledged")

#: What came of an SMS reply to the Twilio number (labels of ``govclock_sms_replies_total``):
#: the decisions of ``POST /v1/channels/twilio/inbound`` (web/twilio.py,
#: ``escalation.replies.decide_reply``), and the requests it turned away before deciding.
SMS_REPLY_OUTCOMES = (
    "acknowledged",  # "1", "确认", …: the sender's most recent open breach page
    "acknowledged_link",  # a reply carrying an acknowledgement link: that page
    "nothing",  # an acknowledgement, but no open page to the sender's people
    "not_understood",  # anything else: answered with a hint
    "link_expired",
    "link_invalid",
    "unavailable",  # a worker did not answer, or the broker did not take the ack: resend
    "unknown_number",  # a number not in the roster: a neutral answer
    "duplicate",  # a MessageSid answered before (Twilio delivered the webhook again)
    "bad_signature",  # 403: X-Twilio-Signature missing or wrong
    "bad_request",  # 400 (no From, not a form) or 413
)

#: How many of each unit's nearest deadlines ``govclock_obligation_next_due_timestamp_seconds``
#: shows (label ``rank``, within the unit), so a dashboard can list what falls due next for
#: any selection of units.
NEXT_DUE_RANKS = 5


class Metrics:
    """The metrics of one worker process."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._prepared: set[tuple[str, str]] = set()  # (rule, unit) pairs created at 0
        self._ingest_and_ledger(registry)
        self._escalation(registry)
        self.sweeper_heartbeat = Gauge(
            f"{PREFIX}_sweeper_heartbeat_timestamp_seconds",
            "When the sweeper last ran on this worker.",
            registry=registry,
        )
        self.ready = Gauge(
            f"{PREFIX}_ready", "1 once tables are recovered and ledgers rebuilt.", registry=registry
        )

    def _ingest_and_ledger(self, registry: CollectorRegistry) -> None:
        """Events in, effects out, obligations fulfilled, breached and archived."""
        self.events_ingested = Counter(
            f"{PREFIX}_events_ingested_total",
            "Events accepted by ingest, by event type.",
            ["type"],
            registry=registry,
        )
        self.events_rejected = Counter(
            f"{PREFIX}_events_rejected_total",
            "Inputs refused (HTTP or topic), by reason class.",
            ["reason"],
            registry=registry,
        )
        self.source_last_event = Gauge(
            f"{PREFIX}_source_last_event_timestamp_seconds",
            "When each source last sent an accepted event (a silent source is an alert).",
            ["source"],
            registry=registry,
        )
        self.effects = Counter(
            f"{PREFIX}_effects_total",
            "Ledger effects emitted, by kind (opened, warned, breached, met, late, ...).",
            ["kind", "rule"],
            registry=registry,
        )
        self.breaches = Counter(
            f"{PREFIX}_breaches_total",
            "Obligations whose window passed without evidence, by rule and unit.",
            ["rule", "unit"],
            registry=registry,
        )
        self.fulfilments = Counter(
            f"{PREFIX}_fulfilments_total",
            "Obligations closed by evidence, by outcome (met, late, unverifiable).",
            ["rule", "unit", "outcome"],
            registry=registry,
        )
        self.archived = Counter(
            f"{PREFIX}_archived_obligations_total",
            "Settled obligations written to the archive and gone from the hot state, by status.",
            ["status"],
            registry=registry,
        )
        self.archive_errors = Counter(
            f"{PREFIX}_archive_errors_total",
            "Archive writes that failed and were retried (the ledger waits for the archive).",
            registry=registry,
        )
        self.forgotten_subjects = Counter(
            f"{PREFIX}_forgotten_subjects_total",
            "Subjects with nothing open, removed from the hot state after the evidence window.",
            registry=registry,
        )
        self.time_to_fulfil = Histogram(
            f"{PREFIX}_time_to_fulfil_ratio",
            "Time from window start to evidence, as a fraction of the window (1 = at the "
            "deadline).",
            ["rule"],
            buckets=(0.1, 0.25, 0.5, 0.75, 0.9, 1.0, 1.5, 2.0, 5.0),
            registry=registry,
        )
        self.detection_delay = Histogram(
            f"{PREFIX}_breach_detection_delay_seconds",
            "From a deadline to the sweeper noticing its breach.",
            buckets=(0.25, 0.5, 1, 2, 5, 30, 300, 3600),
            registry=registry,
        )

    def _escalation(self, registry: CollectorRegistry) -> None:
        """Notifications, on-call gaps, the escalation timer, SMS replies."""
        self.notifications = Counter(
            f"{PREFIX}_notifications_total",
            "Notifications by channel and delivery state.",
            ["channel", "state"],
            registry=registry,
        )
        self.due_to_first_notification = Histogram(
            f"{PREFIX}_due_to_first_notification_seconds",
            "From a deadline (due_at) to the first breach page about it being accepted by "
            "its channel.",
            ["rule"],
            buckets=(1, 5, 15, 60, 300, 900, 3600),
            registry=registry,
        )
        self.detected_to_first_notification = Histogram(
            f"{PREFIX}_detected_to_first_notification_seconds",
            "From the sweeper's tick that noticed a breach (its detected_at, whole seconds) to "
            "the first breach page about it being accepted by its channel: the monitor's own "
            "paging delay, however late the trigger was reported.",
            ["rule"],
            buckets=(1, 2, 5, 15, 60, 300, 900),
            registry=registry,
        )
        self.no_on_call = Counter(
            f"{PREFIX}_no_on_call_total",
            "Pages nobody could be given (nobody on call, or every person and channel of the "
            "fallback chain failed), by the roster unit that should have been told.",
            ["unit"],
            registry=registry,
        )
        self.roster_gap = Gauge(
            f"{PREFIX}_roster_gap",
            "1 while nobody is on call for a roster unit at a level (its rotation has not "
            "started, a gap between overrides), else 0: a page there now would reach nobody.",
            ["unit", "level"],
            registry=registry,
        )
        self.escalation_wake_lag = Histogram(
            f"{PREFIX}_escalation_wake_lag_seconds",
            "From the instant an escalation asked to wake (a repeat, the next rung, a send "
            "to retry) to the notifier waking it.",
            buckets=(0.25, 0.5, 1, 2, 5, 30, 300),
            registry=registry,
        )
        self.sms_replies = Counter(
            f"{PREFIX}_sms_replies_total",
            "SMS replies to the Twilio number (its incoming-message webhook), by outcome: "
            + ", ".join(SMS_REPLY_OUTCOMES)
            + ".",
            ["outcome"],
            registry=registry,
        )

    def init_notifications(self, channels: Iterable[str], units: Iterable[str]) -> None:
        """Create the notifier's series at 0 for every channel x state and every roster unit,
        so rates and alerts see them before the first page (label sets stay bounded)."""
        for channel in channels:
            for state in NOTIFICATION_STATES:
                self.notifications.labels(channel, state)
        for unit in units:
            self.no_on_call.labels(unit)

    def set_roster_gaps(
        self, levels: Iterable[tuple[str, int]], gaps: Iterable[tuple[str, int]]
    ) -> None:
        """The roster's ``levels`` (unit, level) now: 1 for those in ``gaps``, else 0."""
        empty = set(gaps)
        for unit, level in levels:
            self.roster_gap.labels(unit, str(level)).set(1 if (unit, level) in empty else 0)

    def init_sms_replies(self) -> None:
        """Create every SMS-reply outcome at 0 (the inbound webhook is on: Twilio is)."""
        for outcome in SMS_REPLY_OUTCOMES:
            self.sms_replies.labels(outcome)

    def sms_reply(self, outcome: str) -> None:
        """Count one SMS reply; ``outcome`` is one of :data:`SMS_REPLY_OUTCOMES` (anything
        else is a bug: ValueError, so the label set stays bounded)."""
        if outcome not in SMS_REPLY_OUTCOMES:
            raise ValueError(f"unknown SMS reply outcome {outcome!r}")
        self.sms_replies.labels(outcome).inc()

    def prepare_obligation_series(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Create the breach and fulfilment counters of each (rule, unit) at 0, so the first
        breach of a pair is an increase that ``increase()`` and the alerts can see."""
        for pair in pairs:
            if pair in self._prepared:
                continue
            self._prepared.add(pair)
            rule, unit = pair
            self.breaches.labels(rule, unit)
            for outcome in ("met", "late", "unverifiable"):
                self.fulfilments.labels(rule, unit, outcome)

    def observe_effects(
        self,
        effects: Iterable[Any],
        windows: Mapping[str, tuple[int, int]],
        late_known: Container[str] = frozenset(),
    ) -> None:
        """Count ledger effects (:class:`deadlines.ledger.Effect`), a batch at a time:
        ``windows`` gives an obligation's (start, deadline) for the time-to-fulfil ratio of
        met and late; a breach whose key is in ``late_known`` is one the sweeper could not
        have seen sooner (its trigger arrived after the deadline, or the monitor was down),
        so it has no detection delay."""
        by_kind: CounterOf[tuple[str, str]] = CounterOf()
        breaches: CounterOf[tuple[str, str]] = CounterOf()
        fulfilled: CounterOf[tuple[str, str, str]] = CounterOf()
        for effect in effects:
            kind = effect.kind
            by_kind[kind, effect.rule_id] += 1
            if kind == "opened":
                if (effect.rule_id, effect.unit) not in self._prepared:
                    self.prepare_obligation_series([(effect.rule_id, effect.unit)])
            elif kind == "breached":
                breaches[effect.rule_id, effect.unit] += 1
                if effect.detected_at is not None and effect.key not in late_known:
                    self.detection_delay.observe(max(0, effect.detected_at - effect.due_at - 1))
            elif kind in ("met", "late", "unverifiable"):
                fulfilled[effect.rule_id, effect.unit, kind] += 1
                window = windows.get(effect.obligation_id)
                if window is not None and kind != "unverifiable" and window[1] > window[0]:
                    start, due = window
                    self.time_to_fulfil.labels(effect.rule_id).observe(
                        max(0.0, (effect.at - start) / (due - start))
                    )
        for labels, n in by_kind.items():
            self.effects.labels(*labels).inc(n)
        for labels, n in breaches.items():
            self.breaches.labels(*labels).inc(n)
        for labels3, n in fulfilled.items():
            self.fulfilments.labels(*labels3).inc(n)


class LedgerCollector(Collector):
    """Ledger state at scrape time: open obligations, the nearest deadlines, assumptions."""

    def __init__(self, obligations: Callable[[], Iterable[Any]]) -> None:
        self._obligations = obligations

    def collect(self) -> Iterator[GaugeMetricFamily]:
        by_key: dict[tuple[str, str, str], int] = {}
        assumed = 0
        upcoming: dict[str, list[tuple[int, str]]] = {}
        for ob in self._obligations():
            key = (ob.rule.id, ob.status, ob.unit)
            by_key[key] = by_key.get(key, 0) + 1
            if ob.status in ("pending", "paused", "missed") and ob.calendar_assumed:
                assumed += 1
            if ob.status == "pending":
                upcoming.setdefault(ob.unit, []).append((ob.due_at, ob.rule.id))
        open_ = GaugeMetricFamily(
            f"{PREFIX}_obligations",
            "Obligations by rule, status and unit.",
            labels=["rule", "status", "unit"],
        )
        for (rule, status, unit), n in sorted(by_key.items()):
            open_.add_metric([rule, status, unit], n)
        yield open_
        nearest = GaugeMetricFamily(
            f"{PREFIX}_obligation_next_due_timestamp_seconds",
            f"Each unit's {NEXT_DUE_RANKS} nearest pending deadlines, by rank within the "
            "unit (1 = its next).",
            labels=["rank", "rule", "unit"],
        )
        for unit, dues in sorted(upcoming.items()):
            for rank, (due, rule) in enumerate(heapq.nsmallest(NEXT_DUE_RANKS, dues), start=1):
                nearest.add_metric([str(rank), rule, unit], due)
        yield nearest
        yield GaugeMetricFamily(
            f"{PREFIX}_calendar_assumed_obligations",
            "Open obligations whose deadline rests on an assumed holiday calendar.",
            value=assumed,
        )


class EscalationCollector(Collector):
    """Breach escalations waiting for an acknowledgement at scrape time, from the notifier's
    index of the states of its partitions: ``(rule, unit, level)`` for each."""

    def __init__(self, waiting: Callable[[], Iterable[tuple[str, str, int]]]) -> None:
        self._waiting = waiting

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            f"{PREFIX}_escalations_unacknowledged",
            "Breached obligations whose escalation waits for an acknowledgement, by rule, "
            "unit and the rung (level) paged now; only non-zero label sets are exported.",
            labels=["rule", "unit", "level"],
        )
        for (rule, unit, level), n in sorted(CounterOf(self._waiting()).items()):
            family.add_metric([rule, unit, str(level)], n)
        yield family
