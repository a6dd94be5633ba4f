"""Notifier agents: ledger effects, acknowledgements and delivery reports, through the
escalation core, to people (docs/escalation.md, "The live notifier").

* **the escalation feed** (:class:`EffectFeed`, a bulk reader in its own consumer group)
  reads ``govclock-notifications`` (keyed by obligation id, but in the partition of the
  obligation's *subject*) and re-sends each effect to
  ``govclock-escalation-inputs`` in the partition of the obligation id, where acks
  (``POST /v1/obligations/{id}/ack``, :func:`escalation.inputs.submit_ack`), Twilio
  delivery reports (``POST /v1/channels/twilio/status``) and ticks join it, in order.
* **notifier** applies those inputs one at a time (:class:`escalation.notifier.LiveNotifier`):
  state in the ``escalations`` table (rocksdb + changelog) and in a local snapshot, sends in a
  thread pool.
* **escalation-timer** (every 0.2 s) sends ``{"tick": now}`` to each partition it owns whose
  earliest wake (a repeat, the next rung, a send to retry) has come.
* After a rebalance the wake index is rebuilt from the table.

The embedded broker forgets everything on restart, changelogs included, and effects already
emitted are not emitted again (streams/emitted.py). So every state written to the table is
also written to ``<data dir>/escalations`` (rocksdict), and on a fresh broker
:func:`seed_changelog` produces that snapshot into the table's changelog before the worker
starts: Faust recovers the table from it as from any changelog, and escalations under way go
on where they were. Messages are sent at least once and never twice: the channel's sent log
(``<data dir>/sent-<channel>.sqlite3``) answers a key it has seen without sending.

Every message carries a signed acknowledgement link ``<public url>/a/<token>``
(:func:`escalation.links.make_ack_url`; the token names the obligation's escalation
partition, so whichever worker receives the link forwards it to the one that owns that
partition, which resolves it from ``LiveNotifier.refs``). The secret is
``GOVCLOCK_ACK_SECRET``; without it, with the embedded broker, one is generated into
``<data dir>/ack-secret`` (:func:`ack_secrets`).

Without a roster (``GOVCLOCK_ROSTER_FILE``) there is nobody to tell: the notifier is off.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
from collections import deque
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mode import Service
from rocksdict import Rdict

from channels.base import Channel, SqliteSentLog
from channels.console import ConsoleChannel
from config.escalation_files import load_escalation
from config.secrets import parse_secrets
from config.settings import Settings, SettingsError
from deadlines.escalation_codec import CodecError
from escalation.inputs import InputError, effect_input, split_inputs, tick_input
from escalation.links import base_url_problems, make_ack_url
from escalation.notifier import LiveNotifier
from escalation.service import NotifierService
from escalation.store import WriteBehind
from metrics.collectors import EscalationCollector
from streams.bulk import InFlight, bulk_consumer, commit_acknowledged
from streams.publish import batch_records
from streams.table import rows_table
from streams.topics import (
    APP_ID,
    ESCALATION_INPUTS,
    ESCALATIONS_TABLE,
    NOTIFICATIONS,
    changelog_topic,
    escalation_partition,
)
from worker.context import in_partition

if TYPE_CHECKING:
    from worker.context import Context

log = logging.getLogger("govclock.notifier")

#: How often the timer looks for escalations that want to wake.
WAKE_INTERVAL = 0.2
#: How often the roster's gaps (levels with nobody on call) are checked for the gauge.
ROSTER_CHECK_INTERVAL = 30.0
#: Threads for channel sends (the twilio SDK blocks).
SEND_THREADS = 4


class Snapshot:
    """Escalation states on local disk (obligation id → codec bytes), beside the table."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = Rdict(str(path))

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self._db[key] = value

    def get(self, key: bytes) -> bytes | None:
        value = self._db.get(key)
        return value if isinstance(value, bytes) else None

    def items(self) -> list[tuple[bytes, bytes]]:
        return [
            (k, v) for k, v in self._db.items() if isinstance(k, bytes) and isinstance(v, bytes)
        ]

    def close(self) -> None:
        self._db.close()


def dead_letter(raw: bytes, reason: str, message: Any) -> bytes:
    """A dead-letter record for an input the notifier cannot use (with where it was)."""
    return json.dumps(
        {
            "reason": reason,
            "topic": message.topic,
            "partition": message.partition,
            "offset": message.offset,
            "record": raw.decode("utf-8", errors="replace")[:10_000],
        },
        ensure_ascii=False,
    ).encode()


def seed_changelog(snapshot: Snapshot, bootstrap: str, partitions: int) -> int:
    """Produce every state of ``snapshot`` into the (empty) changelog of the ``escalations``
    table, each in its obligation's partition; returns how many. For a fresh broker only:
    on a cluster the changelog is the truth and a snapshot may be older."""
    items = snapshot.items()
    if not items:
        return 0
    from kafka import KafkaProducer  # type: ignore[import-untyped]

    topic = changelog_topic(ESCALATIONS_TABLE)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5)
    try:
        for key, value in items:
            partition = escalation_partition(key.decode(), partitions)
            producer.send(topic, key=key, value=value, partition=partition)
        producer.flush(timeout=60)
    finally:
        producer.close(timeout=10)
    return len(items)


def sms_channel(settings: Settings, data_dir: Path) -> tuple[Channel, SqliteSentLog]:
    """Twilio when ``GOVCLOCK_TWILIO_ACCOUNT_SID`` is set, else the console (``make run``);
    each with its own durable sent log."""
    if settings.twilio_account_sid:
        from channels.twilio_sms import TwilioConfig, TwilioSmsChannel

        token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else ""
        config = TwilioConfig(
            account_sid=settings.twilio_account_sid,
            auth_token=token,
            from_number=settings.twilio_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            public_url=settings.public_url,
            base_url=settings.twilio_base_url,
            region=settings.twilio_region,
            edge=settings.twilio_edge,
            timeout=settings.twilio_timeout or 10.0,
        )
        sent_log = SqliteSentLog(data_dir / "sent-twilio.sqlite3")
        return TwilioSmsChannel(config, sent_log=sent_log), sent_log
    sent_log = SqliteSentLog(data_dir / "sent-console.sqlite3")
    return ConsoleChannel(sent_log=sent_log), sent_log


#: The generated acknowledgement secret, in the data directory (mode 0600).
ACK_SECRET_FILE = "ack-secret"


def ack_secrets(settings: Settings) -> tuple[str, ...]:
    """The acknowledgement links' secrets: ``GOVCLOCK_ACK_SECRET`` (first signs, all verify).

    Unset: with the embedded broker (one worker, ``make run``) a random secret is generated
    once into ``<data dir>/ack-secret`` (mode 0600; logged) and read from there on later
    starts, so links survive restarts. With ``KAFKA_BROKER`` several workers may verify one
    another's links, so each generating its own would break them: that is refused
    (:class:`SettingsError`)."""
    configured = settings.ack_secrets
    if configured:
        return configured
    if not settings.embedded:
        raise SettingsError(
            "invalid settings:\n  GOVCLOCK_ACK_SECRET: required with KAFKA_BROKER when the "
            "notifier is on (GOVCLOCK_ROSTER_FILE): every worker must sign and verify "
            "acknowledgement links with the same secret; set the same value on each, e.g. "
            "from python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        )
    return (generated_secret(settings.data_dir / ACK_SECRET_FILE),)


def generated_secret(path: Path) -> str:
    """The secret in ``path``, created (32 random bytes, base64url, mode 0600) if missing."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            os.chmod(path, 0o600)
            log.warning("govclock: %s was readable by others (mode %o); now 0600", path, mode)
        try:
            (secret,) = parse_secrets(path.read_text(encoding="utf-8").strip())
        except ValueError as exc:
            raise SettingsError(
                f"{path}: not a usable acknowledgement secret ({exc}); remove it to have a "
                "new one generated (links already sent stop working) or set GOVCLOCK_ACK_SECRET"
            ) from None
        log.info("govclock: acknowledgement links signed with the secret in %s", path)
        return secret
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")
        f.flush()
        os.fsync(f.fileno())
    log.warning(
        "govclock: no GOVCLOCK_ACK_SECRET: generated a secret for acknowledgement links in "
        "%s (mode 0600); it is used from there on every start. With several workers set "
        "GOVCLOCK_ACK_SECRET instead",
        path,
    )
    return secret


def ack_base_url(settings: Settings) -> str:
    """Where acknowledgement links point: ``GOVCLOCK_PUBLIC_URL``, else this worker's own
    web server (good for a phone on the same machine only: set the public URL)."""
    return (settings.public_url or f"http://{settings.web_host}:{settings.web_port}").rstrip("/")


def owned(ctx: Context) -> list[int]:
    """The partitions of the escalation inputs this worker owns now."""
    return sorted(
        tp.partition for tp in ctx.app.assignor.assigned_actives() if tp.topic == ESCALATION_INPUTS
    )


def setup(ctx: Context, *, fresh: bool) -> NotifierService | None:
    """Build the notifier from settings and register its agents, timer and hooks; None (and a
    warning) without a roster. ``fresh``: the broker started empty (the embedded one)."""
    settings = ctx.settings
    if settings.roster_file is None:
        ctx.app.log.warning("govclock: no GOVCLOCK_ROSTER_FILE: escalation is off")
        return None
    policies, roster = load_escalation(settings.policy_file, settings.roster_file)
    keys = ack_secrets(settings)  # before anything is opened: may refuse to start
    data_dir = settings.data_dir
    channel, sent_log = sms_channel(settings, data_dir)
    snapshot = Snapshot(data_dir / "escalations")
    n = settings.partitions
    if fresh:
        bootstrap = ",".join(f"{u.host}:{u.port}" for u in ctx.app.conf.broker)
        seeded = seed_changelog(snapshot, bootstrap, n)
        log.info(
            "govclock: %d escalation states from the local snapshot into the changelog", seeded
        )
    app = ctx.app
    inputs = app.topic(
        ESCALATION_INPUTS, partitions=n, key_serializer="raw", value_serializer="raw"
    )
    table = rows_table(app, ESCALATIONS_TABLE, n)  # multi-row changelog records (streams/table.py)
    twilio = settings.twilio_account_sid is not None
    public_url = settings.public_url.rstrip("/") if settings.public_url else None

    def callback_url(partition: int) -> str | None:
        if not twilio or public_url is None:
            return None
        from channels.twilio_sms import STATUS_CALLBACK_PATH

        return f"{public_url}{STATUS_CALLBACK_PATH}?p={partition}"

    def title_for(rule_id: str) -> str | None:
        rules = ctx.book.find(rule_id)
        return rules[0].title if rules else None

    runtime = LiveNotifier(
        policies,
        roster,
        {"sms": channel},
        partitions=n,
        ack_url=lambda notify: "",  # the signed links, just below
        callback_url=callback_url,
        title_for=title_for,
        resolve_sid=sent_log.key_for,
        metrics=ctx.metrics,
        executor=ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="govclock-send"),
        snapshot=snapshot,
    )
    base = ack_base_url(settings)
    for problem in base_url_problems(base):
        log.warning("govclock: GOVCLOCK_PUBLIC_URL: %s", problem)
    runtime.ack_url = make_ack_url(
        base,
        keys[0],
        ttl=round(settings.ack_ttl_hours * 3600),
        index=runtime.refs,  # resolvable at once, before the state is written
        partition=lambda oid: escalation_partition(oid, n),
    )
    channels = {
        str(c)
        for layer in (policies.default, *policies.overrides.values())
        for c in layer.get("channels") or ()
    }
    ctx.metrics.init_notifications(sorted(channels), sorted(roster.units))
    ctx.metrics.registry.register(EscalationCollector(lambda: runtime.unacknowledged.values()))
    if twilio:  # the SMS-reply webhook answers
        ctx.metrics.init_sms_replies()
    token = settings.twilio_auth_token.get_secret_value() if settings.twilio_auth_token else None
    service = NotifierService(
        runtime=runtime,
        inputs=inputs,
        table=table,
        roster=roster,
        channel=channel.name,
        sent_log=sent_log,
        public_url=public_url,
        twilio_auth_token=token if twilio else None,
        ack_secrets=keys,
    )
    register(ctx, service)
    signed_by = (
        f"{len(keys)} secret(s) from GOVCLOCK_ACK_SECRET"
        if settings.ack_secrets
        else f"the secret in {data_dir / ACK_SECRET_FILE}"
    )
    summary = (
        f"govclock: notifier on: roster {roster.source}, policies {policies.source}, SMS by "
        f"{channel.name}, acknowledgement links {base}/a/… valid {settings.ack_ttl_hours:g} h "
        f"({signed_by})"
    )

    @app.task  # type: ignore[untyped-decorator]
    async def announce() -> None:  # once the worker's logging is set up
        log.info(summary)

    return service


#: The escalation feed's consumer group (it reads the notifications topic in bulk).
FEED_GROUP = f"{APP_ID}-escalation-feed"
#: Notification records fetched per batch at most.
FEED_BATCH = 5000
#: Fetched batches re-sent but not yet acknowledged, at most.
FEED_IN_FLIGHT = 4
#: Inputs applied between two yields to the event loop (~60 µs each when nothing is sent):
#: a feed batch holds up to ~1,700, and the ledger and the sweeper share the loop.
YIELD_EVERY = 200


def rekey(
    records: Iterable[tuple[bytes | None, bytes]], partitions: int, at: int
) -> tuple[dict[int, list[bytes]], list[int]]:
    """Notification records (key, value) as escalation inputs by escalation partition (of
    the key, an obligation id), in order; and the indexes of those without a key, which
    cannot go on."""
    out: dict[int, list[bytes]] = {}
    keyless: list[int] = []
    for i, (key, raw) in enumerate(records):
        if not key:
            keyless.append(i)
            continue
        partition = escalation_partition(key.decode(), partitions)
        out.setdefault(partition, []).append(effect_input(raw, at))
    return out, keyless


class EffectFeed(Service):
    """The escalation feed: reads ``govclock-notifications`` in bulk (its own consumer group,
    like ingest: Faust's per-record path would cost ~100 µs per effect, and a backlog's first
    tick breaches thousands at once) and re-sends each effect to the escalation partition of
    its obligation as produce batches; offsets are committed, in order, once the broker has
    acknowledged what each fetched batch re-sent."""

    def __init__(self, ctx: Context, clock: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.ctx = ctx
        self.clock = clock
        self.consumer: Any = None

    async def on_start(self) -> None:
        self.consumer = bulk_consumer(self.ctx.app, NOTIFICATIONS, FEED_GROUP, FEED_BATCH)
        await self.consumer.start()

    async def on_stop(self) -> None:
        if self.consumer is not None:
            await self.consumer.stop()

    @Service.task
    async def _consume(self) -> None:
        in_flight: InFlight = deque()
        while not self.should_stop:
            fetched = await self.consumer.getmany(timeout_ms=100, max_records=FEED_BATCH)
            if fetched:
                msgs = [m for ms in fetched.values() for m in ms]
                offsets = {tp: ms[-1].offset + 1 for tp, ms in fetched.items() if ms}
                in_flight.append((await self.forward(msgs), offsets))
            await commit_acknowledged(
                self.consumer, in_flight, FEED_IN_FLIGHT, self.ctx.app.log, "escalation feed"
            )

    async def forward(self, msgs: list[Any]) -> asyncio.Future[Any]:
        """Re-send ``msgs`` (notification records) as escalation inputs; returns a future
        that completes once the broker has acknowledged all of it."""
        ctx = self.ctx
        by_partition, keyless = rekey(
            ((m.key, m.value) for m in msgs), ctx.settings.partitions, int(self.clock())
        )
        pending: list[Any] = []
        for i in keyless:
            reason = "notification without a key"
            pending.append(
                await ctx.dead_letters.send(value=dead_letter(msgs[i].value, reason, msgs[i]))
            )
        for partition, values in by_partition.items():
            # One record per partition (under 512 KiB): the notifier agent then pays Faust's
            # per-record cost once per batch, not once per effect.
            batches = [(None, b) for b in batch_records(values)]
            sent = await ctx.publish(ESCALATION_INPUTS, partition, batches)
            pending += [future for future, _ in sent]
        acked: asyncio.Future[Any] = asyncio.ensure_future(asyncio.gather(*pending))
        return acked


def register(ctx: Context, service: NotifierService) -> None:
    app, runtime, inputs, table = ctx.app, service.runtime, service.inputs, service.table
    clock = runtime.clock

    ctx.app.service(EffectFeed(ctx, clock))  # type: ignore[arg-type]  # started with the app

    roster, levels = service.roster, service.roster.level_pairs()
    ctx.metrics.set_roster_gaps(levels, roster.gaps(int(clock())))

    @app.timer(ROSTER_CHECK_INTERVAL, name="roster-gaps")  # type: ignore[untyped-decorator]
    async def roster_gaps() -> None:
        """Who is on call changes with the clock (handoffs, overrides): look again."""
        ctx.metrics.set_roster_gaps(levels, roster.gaps(int(clock())))

    @app.agent(inputs, name="notifier")
    async def notifier(stream: Any) -> None:
        async for batch in stream.take_events(500, within=0.01):
            by_partition: dict[int, list[Any]] = {}
            for event in batch:
                by_partition.setdefault(event.message.partition, []).append(event)
            applied = 0  # inputs since the last yield, across records and partitions
            for partition, events in by_partition.items():
                # States changed by these inputs go to the changelog as one record (a send
                # flushes what is buffered first: see LiveNotifier._write_ahead).
                store = WriteBehind(table, writer(partition, events[-1]))
                for event in events:
                    try:
                        items = split_inputs(event.value)  # a batch from the feed, or one
                    except InputError as exc:
                        await refuse(event.value, exc, event.message)
                        continue
                    for raw in items:
                        applied += 1
                        if applied % YIELD_EVERY == 0:
                            await asyncio.sleep(0)  # let the ledger and sweeper run too
                        with in_partition(event):
                            try:
                                reroute = await runtime.handle(store, partition, raw)
                            except (InputError, CodecError) as exc:
                                await refuse(raw, exc, event.message)
                                continue
                        if reroute is not None:
                            inputs.send_soon(
                                key=reroute.obligation_id.encode(),
                                value=reroute.raw,
                                partition=reroute.partition,
                            )
                store.flush()

    async def refuse(raw: bytes, exc: Exception, message: Any) -> None:
        """An input the notifier cannot apply goes to the dead-letter topic; others go on."""
        ctx.count("dead_letters")
        await ctx.dead_letters.send(value=dead_letter(raw, str(exc), message))

    def writer(partition: int, event: Any) -> Any:
        def write(rows: list[tuple[bytes, bytes]]) -> None:
            with in_partition(event):  # the rocksdb store takes the partition from it
                table.write_rows(partition, rows)

        return write

    @app.timer(WAKE_INTERVAL, name="escalation-timer")  # type: ignore[untyped-decorator]
    async def wake() -> None:
        if not runtime.restored:
            return
        now = clock()
        for p in owned(ctx):
            if runtime.wants_tick(p, now):
                runtime.tick_sent(p, now)
                await inputs.send(value=tick_input(int(now)), partition=p)

    @app.on_rebalance_complete.connect
    async def restore(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        """After table recovery: when does each escalation of our partitions want to wake."""
        mine = owned(ctx)
        count = runtime.restore(mine, table.items())
        ctx.app.log.info(f"govclock: {count} escalation states in partitions {mine}")

    @app.on_partitions_revoked.connect
    async def revoked(app: Any, /, *args: Any, signal: Any, **kwargs: Any) -> None:
        runtime.restored = False
