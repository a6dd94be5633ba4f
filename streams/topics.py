"""The one place that names govclock's Kafka topics and tables, their keys and partitions.

Data flow (docs/broker.md has the reasoning)::

    producers ──► govclock-events ──(validate, route)──► govclock-subject-events ──► ledger
                   any key                  │              key: subject          (table
                                            │                                    "subjects")
                                            └─► govclock-deadletters               │
                                                                                    ▼
                                                              govclock-notifications
                                                              key: obligation id, in the
                                                              subject's partition
                                                                    │ (re-keyed)
    acks (HTTP), Twilio delivery reports, the notifier's ticks      ▼
        ──────────────────────────────────────────────► govclock-escalation-inputs ──► notifier
                                                         key: obligation id         (table
                                                                                "escalations")

Every topic keyed by subject, and every table, has the same number of partitions
(``GOVCLOCK_PARTITIONS``), and all producers use Kafka's default partitioner (murmur2 of the
key bytes), so a subject's events, its table row and its notifications live in the same
partition number: co-partitioned. A subject key is ``ref=value`` exactly as the ledger
spells it (:func:`subject_key`), encoded as UTF-8 bytes.

Escalation lives by **obligation id** instead: an acknowledgement or a delivery report names
an obligation (or a message of one), not its subject, and an obligation's subject cannot
always be told from its id (opinions about an incident live on the incident). So the
notifier re-keys each notification into ``govclock-escalation-inputs`` in the partition
Kafka's partitioner gives the obligation id (:func:`escalation_partition`), where acks,
delivery reports and ticks join it, in order; the ``escalations`` table is co-partitioned
with that topic. Anyone can compute where an obligation's escalation lives from its id.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiokafka.partitioner import murmur2

__all__ = [
    "APP_ID",
    "DEAD_LETTERS",
    "ESCALATIONS_TABLE",
    "ESCALATION_INPUTS",
    "EVENTS",
    "NOTIFICATIONS",
    "SUBJECTS_TABLE",
    "SUBJECT_EVENTS",
    "TableSpec",
    "TopicMismatchError",
    "TopicSpec",
    "all_topic_specs",
    "changelog_topic",
    "create_topics",
    "escalation_partition",
    "subject_key",
    "table_specs",
    "topic_specs",
]

#: Faust app id; it prefixes every topic name, and Faust names changelogs after it.
APP_ID = "govclock"

#: Ingest: what webhooks, feeds and integrators produce. One JSON event per record (the
#: objects of docs/events.md), any key (the event's own id is a good one, or none).
EVENTS = f"{APP_ID}-events"
#: Accepted events, once per subject they name, keyed by :func:`subject_key`.
SUBJECT_EVENTS = f"{APP_ID}-subject-events"
#: Ledger effects (opened, warned, breached, met, late, …) for notifiers: keyed by obligation
#: id, in the partition of the obligation's subject (so per subject, in order).
NOTIFICATIONS = f"{APP_ID}-notifications"
#: What the notifier of an obligation consumes, keyed by obligation id (default partitioner):
#: ``{"effect": …}`` (notifications, re-keyed), ``{"ack": …}``, ``{"delivery": …}``, and
#: ``{"tick": …}`` sent to one partition (escalation/inputs.py has the records).
ESCALATION_INPUTS = f"{APP_ID}-escalation-inputs"
#: Records that could not be processed, with the reason; for people, not for replay logic.
DEAD_LETTERS = f"{APP_ID}-deadletters"

#: The ledger's per-subject state, keyed by subject, co-partitioned with SUBJECT_EVENTS.
SUBJECTS_TABLE = "subjects"
#: The notifier's escalation state per obligation (deadlines/escalation_codec.py bytes), keyed
#: by obligation id, co-partitioned with ESCALATION_INPUTS.
ESCALATIONS_TABLE = "escalations"

#: Keep forever: the ingest log is the record of what govclock was told (state is rebuilt by
#: replaying it), and dead letters wait for a person.
_KEEP = {"cleanup.policy": "delete", "retention.ms": "-1"}


def subject_key(ref: str, value: str) -> str:
    """The record key of a subject, e.g. ``incident_id=I-2026-031`` (as the ledger names
    subjects: ``unit=<unit>`` for unit-level duties)."""
    return f"{ref}={value}"


def escalation_partition(obligation_id: str, partitions: int) -> int:
    """The partition of ``govclock-escalation-inputs`` (and of the ``escalations`` table) that
    holds an obligation's escalation: Kafka's default partitioner (murmur2) of its id."""
    hashed: int = murmur2(obligation_id.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def changelog_topic(table: str, app_id: str = APP_ID) -> str:
    """Faust's changelog topic name for a table: ``<app id>-<table>-changelog``."""
    return f"{app_id}-{table}-changelog"


@dataclass(frozen=True)
class TopicSpec:
    """A topic govclock owns: name, partitions, replication, configs, and what its key is."""

    name: str
    partitions: int
    key: str
    purpose: str
    replication_factor: int = 1
    configs: Mapping[str, str] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        if self.partitions < 1 or self.replication_factor < 1:
            raise ValueError(f"{self.name}: partitions and replication factor must be >= 1")


@dataclass(frozen=True)
class TableSpec:
    """A Faust table: its key, the topic it is co-partitioned with, and its changelog."""

    name: str
    source: str
    key: str
    purpose: str

    @property
    def changelog(self) -> str:
        return changelog_topic(self.name)


def topic_specs(partitions: int, replication_factor: int = 1) -> tuple[TopicSpec, ...]:
    """The event, notification, escalation-input and dead-letter topics (not the changelogs)."""
    rf = replication_factor
    return (
        TopicSpec(
            EVENTS,
            partitions,
            key="any (the event's own id suggested); not relied on",
            purpose="ingest: events as producers send them",
            replication_factor=rf,
            configs=_KEEP,
        ),
        TopicSpec(
            SUBJECT_EVENTS,
            partitions,
            key="none: batch records written to the partition of their subjects",
            purpose="accepted events, once per subject named, in per-partition batch records",
            replication_factor=rf,
        ),
        TopicSpec(
            NOTIFICATIONS,
            partitions,
            key="obligation id (in its subject's partition)",
            purpose="ledger effects for notifiers, per subject in order",
            replication_factor=rf,
        ),
        TopicSpec(
            ESCALATION_INPUTS,
            partitions,
            key="obligation id",
            purpose="the notifier's inputs: effects re-keyed, acks, delivery reports, ticks",
            replication_factor=rf,
        ),
        TopicSpec(
            DEAD_LETTERS,
            1,
            key="the failed record's key",
            purpose="unprocessable records with the reason, in arrival order",
            replication_factor=rf,
            configs=_KEEP,
        ),
    )


def table_specs() -> tuple[TableSpec, ...]:
    return (
        TableSpec(
            SUBJECTS_TABLE,
            source=SUBJECT_EVENTS,
            key="subject (ref=value)",
            purpose="the ledger: each subject's obligations, evidence and seen event ids",
        ),
        TableSpec(
            ESCALATIONS_TABLE,
            source=ESCALATION_INPUTS,
            key="obligation id",
            purpose="the notifier: each obligation's escalation state (policy, pages, acks)",
        ),
    )


def all_topic_specs(partitions: int, replication_factor: int = 1) -> tuple[TopicSpec, ...]:
    """Every topic to create before the worker starts, changelogs included (each with the
    partitions of its table's source topic, compacted like Faust's own)."""
    topics = topic_specs(partitions, replication_factor)
    by_name = {t.name: t for t in topics}
    changelogs = tuple(
        TopicSpec(
            table.changelog,
            by_name[table.source].partitions,
            key=table.key,
            purpose=f"changelog of table {table.name!r}",
            replication_factor=replication_factor,
            configs={"cleanup.policy": "compact"},
        )
        for table in table_specs()
    )
    return topics + changelogs


# -- creating them --------------------------------------------------------------------


class TopicMismatchError(RuntimeError):
    """A topic exists with a partition count other than the one declared here."""


def _partition_count(info: Mapping[str, Any]) -> int:
    return len(info.get("partitions") or ())


def create_topics(
    bootstrap: str | Sequence[str],
    specs: Iterable[TopicSpec],
    *,
    timeout: float = 15.0,
    client_id: str = f"{APP_ID}-admin",
) -> dict[str, str]:
    """Create the topics that do not exist yet; ``{name: "created" | "exists"}``.

    Idempotent: a topic that exists (or that another worker creates meanwhile) is fine if it
    has the declared number of partitions; any other count raises
    :class:`TopicMismatchError`, because co-partitioning would silently break. Existing
    topics' configs are left as they are."""
    from kafka import KafkaAdminClient  # type: ignore[import-untyped]
    from kafka.errors import TopicAlreadyExistsError  # type: ignore[import-untyped]
    from kafka.errors import for_code as error_for_code

    wanted = {s.name: s for s in specs}
    timeout_ms = int(timeout * 1000)
    servers = bootstrap.split(",") if isinstance(bootstrap, str) else list(bootstrap)
    result: dict[str, str] = {}
    admin = KafkaAdminClient(
        bootstrap_servers=servers,
        client_id=client_id,
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:

        def check_existing(names: Iterable[str]) -> None:
            asked = sorted(names)
            if not asked:
                return  # (an empty list would describe every topic)
            for info in admin.describe_topics(asked):
                name = info["name"]
                if name not in wanted or info.get("error_code", 0) != 0:
                    continue  # not there (yet)
                spec = wanted[name]
                have = _partition_count(info)
                if have != spec.partitions:
                    raise TopicMismatchError(
                        f"topic {name} has {have} partitions, govclock declares "
                        f"{spec.partitions} (GOVCLOCK_PARTITIONS); co-partitioning needs "
                        "them equal: use the existing count or recreate the topics"
                    )
                result.setdefault(name, "exists")

        present = set(admin.list_topics()) & wanted.keys()
        check_existing(present)
        missing = [n for n in wanted if n not in present]
        if missing:
            response = admin.create_topics(
                {
                    n: {
                        "num_partitions": wanted[n].partitions,
                        "replication_factor": wanted[n].replication_factor,
                        "configs": dict(wanted[n].configs),
                    }
                    for n in missing
                },
                timeout_ms=timeout_ms,
                raise_errors=False,
            )
            raced = []
            for topic in response["topics"]:
                name, code = topic["name"], topic["error_code"]
                error = error_for_code(code)
                if code == 0:
                    result[name] = "created"
                elif error is TopicAlreadyExistsError:
                    raced.append(name)
                else:
                    detail = topic.get("error_message") or error.__name__
                    raise RuntimeError(f"cannot create topic {name}: {detail}")
            admin.wait_for_topics(missing, timeout_ms=timeout_ms)
            check_existing(raced)
    finally:
        admin.close()
    return {name: result[name] for name in wanted}
