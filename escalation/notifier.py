"""The notifier: ledger effects in, messages to people out, without Faust.

For each obligation it keeps the escalation state of :mod:`deadlines.escalation` (the policy
frozen in at the first effect) and runs the core's decisions with real channels
(:mod:`channels`): a ``Notify`` becomes a send on its channel, keyed by the core's
idempotency key (the channel's sent log answers a repeated key without sending again); a
send that fails at once is reported back to the core (``on_delivery(..., "failed")``), which
moves on to the next person or channel immediately; a ``NoOnCall`` is kept as an alert.
Time is passed in (``now``); the agent that consumes the notifications topic supplies it.

Two runtimes share this logic:

* :class:`escalation.memory.Notifier` — everything in memory, synchronous sends (tests,
  scripted runs);
* :class:`LiveNotifier` — what the Faust agent runs (agents/notifier.py): states in a mapping
  (the ``escalations`` table) as codec bytes, one input at a time
  (:mod:`escalation.inputs`), sends in a thread pool so the event loop never blocks,
  a send the provider could not take yet retried with backoff, and an index of when each
  obligation next wants to wake, per partition, for the timer.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, MutableMapping
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

from channels.base import (
    Channel,
    OutboundMessage,
    PermanentChannelError,
    SendResult,
    TransientChannelError,
)
from deadlines.escalation import next_wake, on_ack, on_delivery, on_effect, start, tick
from deadlines.escalation_codec import CodecError, decode_state, encode_state
from deadlines.escalation_policy import PolicyBook
from deadlines.escalation_state import BREACHED, DELIVERY_FAILED, EscalationState, NoOnCall, Notify
from deadlines.obligations import Effect
from deadlines.roster import Roster, mask_phone
from escalation.inputs import (
    AckInput,
    DeliveryInput,
    EffectInput,
    InputError,
    TickInput,
    decode_input,
    obligation_of,
)
from escalation.links import AckIndex
from escalation.pages import OpenPage, open_pages_of
from escalation.sent import notify_of, still_needed
from escalation.store import StateSink, WriteBehind
from escalation.view import escalation_view
from metrics.collectors import Metrics
from streams.topics import escalation_partition

log = logging.getLogger("govclock.notifier")


# ---------------------------------------------------------------------------------------
# The live runtime (what the Faust agent runs)


#: A send the provider could not take yet is retried after 5 s, 10 s, 20 s, … at most 5 min.
RETRY_BASE_S = 5.0
RETRY_MAX_S = 300.0
#: A tick sent to a partition and not applied within this long is sent again.
TICK_RESEND_S = 5.0


@dataclass(frozen=True, slots=True)
class Reroute:
    """The input belongs to another partition's notifier (a delivery report routed by a
    stale hint): send ``raw`` there."""

    obligation_id: str
    partition: int
    raw: bytes


@dataclass
class _Sending:
    """The outcome of trying one Notify: a result, or None when the provider could not take
    it yet (retry later); ``counted``: a real attempt (not a channel that does not exist)."""

    notify: Notify
    result: SendResult | None
    counted: bool = True


class LiveNotifier:
    """Escalation for the partitions one worker owns, one input at a time.

    ``handle(store, partition, raw)`` applies one record of ``govclock-escalation-inputs``:
    it loads the obligation's state from ``store`` (the ``escalations`` table: obligation id
    bytes → :mod:`deadlines.escalation_codec` bytes), runs the core's decision, sends what it
    decided, feeds each send's outcome back (a refusal falls back at once; an accepted message
    is recorded ``queued``/``sent``), and writes the state back (to ``snapshot`` too, if
    given); before each send it is written ahead with that message ``pending``, so a kill
    mid-send resends it with the same key and text (:meth:`_write_ahead`). A message whose
    send the provider could not take yet stays ``pending`` in the state and is sent again,
    same key, at the next tick due for it (with backoff; after a restart at once): delivered
    at least once, never twice (the channel's sent log).

    ``wakes[partition][obligation id]`` is when each obligation next wants a tick (a repeat,
    the next rung, a send to retry); :meth:`wants_tick` tells the timer when a partition
    needs a ``{"tick": now}`` record. Decisions use ``clock()`` when the input is applied.

    ``refs`` is the acknowledgement links' lookup (:class:`escalation.links.AckIndex`) for
    the partitions this worker owns: every (obligation, person) a message went to, rebuilt
    from the table by :meth:`restore` and kept up to date as states are written. Likewise
    :meth:`open_pages`: the unacknowledged breach pages by person (SMS replies).
    """

    def __init__(
        self,
        policies: PolicyBook,
        roster: Roster,
        channels: Mapping[str, Channel],
        *,
        partitions: int,
        ack_url: Callable[[Notify], str],
        callback_url: Callable[[int], str | None] = lambda partition: None,
        title_for: Callable[[str], str | None] = lambda rule_id: None,
        resolve_sid: Callable[[str], str | None] = lambda sid: None,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.time,
        executor: Executor | None = None,
        snapshot: StateSink | None = None,
    ) -> None:
        self.policies = policies
        self.roster = roster
        self.channels = channels
        self.partitions = partitions
        #: Fills ``{ack_url}`` in each text; replace it to give signed acknowledgement links.
        self.ack_url = ack_url
        self.callback_url = callback_url
        self.title_for = title_for
        self.resolve_sid = resolve_sid
        self.metrics = metrics
        self.clock = clock
        self.executor = executor
        self.snapshot = snapshot
        self.wakes: dict[int, dict[str, int]] = {}
        #: ack links' ref -> (obligation, person), for the partitions owned here
        self.refs = AckIndex()
        #: person id -> obligation id -> the latest unacknowledged breach page (SMS replies)
        self._open: dict[str, dict[str, OpenPage]] = {}
        self._open_people: dict[str, tuple[str, ...]] = {}  # obligation id -> its keys above
        self.restored = False
        #: Obligations with a state in the table (of the partitions owned since the last
        #: restore): an input about any other one needs no table read to know it has none.
        self.known: set[str] = set()
        self.alerts: deque[NoOnCall] = deque(maxlen=1000)  # the latest, for the board
        #: obligation id -> (rule, unit, level) of breach escalations not acknowledged
        self.unacknowledged: dict[str, tuple[str, str, int]] = {}
        self.stats: dict[str, int] = {}
        self._retry: dict[str, tuple[int, float]] = {}  # message key -> (attempts, due at)
        self._ticks: dict[int, float] = {}  # partition -> when a tick was sent, not applied

    # -- ownership and waking ---------------------------------------------------------

    def restore(self, owned: Iterable[int], rows: Iterable[tuple[bytes, bytes]]) -> int:
        """Rebuild the wake index of the partitions ``owned`` from the table's rows (after a
        rebalance, once the table is recovered); returns how many states were read."""
        owned = set(owned)
        self.wakes = {p: {} for p in owned}
        self.refs.clear()
        self.known.clear()
        self._open.clear()
        self._open_people.clear()
        self.unacknowledged.clear()
        self._ticks = {p: t for p, t in self._ticks.items() if p in owned}
        count = 0
        for key, value in rows:
            if value is None:
                continue
            oid = key.decode() if isinstance(key, bytes) else str(key)
            p = escalation_partition(oid, self.partitions)
            if p not in owned:
                continue
            self.known.add(oid)
            try:
                state = decode_state(value)
            except CodecError as exc:
                log.error("notifier: escalation state of %s unreadable: %s", oid, exc)
                continue
            count += 1
            self._index(p, state)
        self.restored = True
        return count

    def next_wake(self, partition: int) -> int | None:
        wakes = self.wakes.get(partition)
        return min(wakes.values()) if wakes else None

    def wants_tick(self, partition: int, now: float) -> bool:
        """A tick is due for ``partition`` and none is on its way."""
        due = self.next_wake(partition)
        if due is None or due > now:
            return False
        sent = self._ticks.get(partition)
        return sent is None or now - sent >= TICK_RESEND_S

    def tick_sent(self, partition: int, now: float) -> None:
        self._ticks[partition] = now

    def _wake_of(self, state: EscalationState) -> int | None:
        times = [w for w in (next_wake(state),) if w is not None]
        for s in state.sent:
            if s.status == "pending" and still_needed(state, s):
                times.append(int(self._retry.get(s.key, (0, 0.0))[1]))
        return min(times) if times else None

    def open_pages(self, people: Iterable[str], since: int = 0) -> list[OpenPage]:
        """The unacknowledged breach pages to any of ``people`` sent at or after ``since``,
        in this worker's partitions, the most recent first (one per obligation and person)."""
        found = [
            page
            for person in dict.fromkeys(people)
            for page in self._open.get(person, {}).values()
            if page.at >= since
        ]
        found.sort(key=lambda p: (p.at, p.level, p.obligation_id, p.person_id), reverse=True)
        return found

    def _index_pages(self, partition: int, state: EscalationState) -> None:
        oid = state.obligation_id
        for person in self._open_people.pop(oid, ()):
            pages = self._open.get(person)
            if pages is not None:
                pages.pop(oid, None)
                if not pages:
                    del self._open[person]
        latest = open_pages_of(state, partition)
        for person, page in latest.items():
            self._open.setdefault(person, {})[oid] = page
        if latest:
            self._open_people[oid] = tuple(latest)

    def _index(self, partition: int, state: EscalationState) -> None:
        self.refs.add_state(state)
        self._index_pages(partition, state)
        if state.stage == BREACHED and not state.terminal:
            self.unacknowledged[state.obligation_id] = (state.rule_id, state.unit, state.level)
        else:
            self.unacknowledged.pop(state.obligation_id, None)
        wakes = self.wakes.setdefault(partition, {})
        wake = self._wake_of(state)
        if wake is None:
            wakes.pop(state.obligation_id, None)
        else:
            wakes[state.obligation_id] = wake

    # -- one input ---------------------------------------------------------------------

    async def handle(
        self, store: MutableMapping[bytes, bytes], partition: int, raw: bytes
    ) -> Reroute | None:
        """Apply one input record of ``partition`` (raises :class:`InputError`)."""
        record = decode_input(raw)
        now = int(self.clock())
        if isinstance(record, TickInput):
            self._ticks.pop(partition, None)
            for oid in [o for o, w in self.wakes.get(partition, {}).items() if w <= now]:
                await self._tick(store, partition, oid, now)
            return None
        if isinstance(record, DeliveryInput):
            key = record.key
            if key is None and record.sid is not None:
                key = self.resolve_sid(record.sid)
            if key is None:
                self._count("deliveries_unknown")
                log.info("notifier: %s for unknown message %s; ignored", record.status, record.sid)
                return None
            try:
                oid = obligation_of(key)
            except ValueError as exc:
                raise InputError(str(exc)) from None
        elif isinstance(record, EffectInput):
            oid = record.effect.obligation_id
        else:
            oid = record.obligation_id
        home = escalation_partition(oid, self.partitions)
        if home != partition:
            return Reroute(oid, home, raw)
        if isinstance(record, EffectInput):
            await self._effect(store, partition, record.effect, now)
        elif isinstance(record, AckInput):
            await self._ack(store, partition, record, now)
        else:
            await self._delivery(store, partition, oid, key or "", record, now)
        return None

    def _load(self, store: MutableMapping[bytes, bytes], oid: str) -> EscalationState | None:
        if self.restored and oid not in self.known:
            return None  # most inputs open an escalation: skip a lookup that finds nothing
        raw = store.get(oid.encode())
        if raw is None:
            return None
        return decode_state(raw)

    def _save(
        self,
        store: MutableMapping[bytes, bytes],
        partition: int,
        old: EscalationState | None,
        state: EscalationState,
    ) -> None:
        self._index(partition, state)
        if state is not old and self._write(store, state):
            self._count("states_written")

    def _write(self, store: MutableMapping[bytes, bytes], state: EscalationState) -> bool:
        """``state`` into the table and the snapshot, unless the table holds it already
        (unchanged, or written ahead as it is); whether it was written."""
        oid = state.obligation_id
        key = oid.encode()
        data = encode_state(state)
        if (oid in self.known or not self.restored) and store.get(key) == data:
            return False
        store[key] = data
        self.known.add(oid)
        if self.snapshot is not None:
            self.snapshot[key] = data
        return True

    def _write_ahead(self, store: MutableMapping[bytes, bytes], state: EscalationState) -> None:
        """Write ``state`` before a send, with the messages the core just decided still
        ``pending`` in it (table and snapshot; no-op if they hold it already).

        A process killed while a send is in flight (the provider may have taken the message)
        then comes back with the message ``pending`` and sends it again, same key, *same text*
        (same send time, same link), at once: the channel's sent log replays a result it
        recorded, and a key it had only begun is looked up at the provider by that text
        (:class:`channels.twilio_sms.TwilioSmsChannel`) instead of being sent a second
        time. Without this the state came back from before the decision, the core decided the
        message again at the new time, and once the restart crossed a minute (the text's send
        time, the link's expiry) the provider's copy no longer matched: sent twice."""
        if self._write(store, state):
            self._count("states_written_ahead")
        if isinstance(store, WriteBehind):
            store.flush()  # queued to the changelog before the message goes out

    async def _effect(
        self, store: MutableMapping[bytes, bytes], partition: int, effect: Effect, now: int
    ) -> None:
        old = self._load(store, effect.obligation_id)
        state = old or start(effect, self.policies, title=self.title_for(effect.rule_id))
        state, actions = on_effect(state, effect, self.roster, now)
        state, accepted = await self._run(store, state, actions, partition, now)
        self._save(store, partition, old, state)
        first = effect.kind == "breached" and any(n.kind == "breached" for n in accepted)
        if first and self.metrics is not None:
            now_s = self.clock()
            noticed = effect.due_at if effect.detected_at is None else effect.detected_at
            metrics = self.metrics
            metrics.due_to_first_notification.labels(effect.rule_id).observe(
                max(0.0, now_s - effect.due_at)
            )
            metrics.detected_to_first_notification.labels(effect.rule_id).observe(
                max(0.0, now_s - noticed)
            )

    async def _ack(
        self, store: MutableMapping[bytes, bytes], partition: int, ack: AckInput, now: int
    ) -> None:
        old = self._load(store, ack.obligation_id)
        if old is None:
            self._count("acks_unknown")
            log.warning("notifier: ack for %s, which has no escalation; ignored", ack.obligation_id)
            return
        state, actions = on_ack(old, ack.level, ack.person, now)
        if len(state.acks) > len(old.acks):
            self._count("acks")
            log.info(
                "notifier: %s acknowledged at level %d by %s (%s)",
                ack.obligation_id,
                ack.level,
                ack.person,
                ack.via,
            )
            if self.metrics is not None:
                channel = _ack_channel(state, ack.level, ack.person)
                self.metrics.notifications.labels(channel, "acknowledged").inc()
        state, _ = await self._run(store, state, actions, partition, now)
        self._save(store, partition, old, state)

    async def _delivery(
        self,
        store: MutableMapping[bytes, bytes],
        partition: int,
        oid: str,
        key: str,
        report: DeliveryInput,
        now: int,
    ) -> None:
        old = self._load(store, oid)
        if old is None:
            self._count("deliveries_unknown")
            return
        before = next((s for s in old.sent if s.key == key), None)
        state, actions = on_delivery(old, key, report.status, now)
        after = next((s for s in state.sent if s.key == key), None)
        if before is not None and after is not None and after.status != before.status:
            self._count(f"delivery_{report.status}")
            if self.metrics is not None:
                channel = after.contact.channel
                if report.status == "delivered":
                    self.metrics.notifications.labels(channel, "delivered").inc()
                elif report.status in DELIVERY_FAILED:
                    self.metrics.notifications.labels(channel, "failed").inc()
            if report.status in DELIVERY_FAILED:
                log.warning(
                    "notifier: %s to %s %s (error %s): falling back",
                    key,
                    mask_phone(after.contact.phone),
                    report.status,
                    report.error_code,
                )
        state, _ = await self._run(store, state, actions, partition, now)
        self._save(store, partition, old, state)

    async def _tick(
        self, store: MutableMapping[bytes, bytes], partition: int, oid: str, now: int
    ) -> None:
        old = self._load(store, oid)
        wake = self.wakes.get(partition, {}).get(oid)
        if old is None:
            self.wakes.get(partition, {}).pop(oid, None)
            return
        if wake is not None and self.metrics is not None:
            self.metrics.escalation_wake_lag.observe(max(0.0, self.clock() - wake))
        state = old
        # 1. messages the provider could not take yet, whose retry is due
        retry = [
            notify_of(state, s)
            for s in state.sent
            if s.status == "pending"
            and still_needed(state, s)
            and self._retry.get(s.key, (0, 0.0))[1] <= now
        ]
        if retry:
            state, _ = await self._run(store, state, list(retry), partition, now)
        # 2. repeats and the next rung
        wake_core = next_wake(state)
        if wake_core is not None and wake_core <= now:
            state, actions = tick(state, self.roster, now)
            state, _ = await self._run(store, state, actions, partition, now)
        self._save(store, partition, old, state)

    # -- sending -----------------------------------------------------------------------

    async def _run(
        self,
        store: MutableMapping[bytes, bytes],
        state: EscalationState,
        actions: list[Any],
        partition: int,
        now: int,
    ) -> tuple[EscalationState, list[Notify]]:
        """Carry out the core's actions in order; a refusal is fed back at once (fallback).
        Before each send the state is written ahead (:meth:`_write_ahead`). Returns the new
        state and the messages the providers took for the first time."""
        accepted: list[Notify] = []
        queue = list(actions)
        while queue:
            action = queue.pop(0)
            if isinstance(action, NoOnCall):
                self.alerts.append(action)
                self._count("no_on_call")
                if self.metrics is not None:
                    self.metrics.no_on_call.labels(action.unit).inc()
                log.warning("notifier: NOBODY TOLD %s: %s", action.key, action.reason)
                continue
            self._write_ahead(store, state)
            sending = await self._deliver(action, partition)
            result = sending.result
            if result is None:  # not taken yet: stays pending, retried with backoff
                attempts = self._retry.get(action.key, (0, 0.0))[0] + 1
                delay = min(RETRY_MAX_S, RETRY_BASE_S * 2 ** (attempts - 1))
                self._retry[action.key] = (attempts, now + delay)
                continue
            self._retry.pop(action.key, None)
            fresh = not result.replayed
            if result.ok:
                if fresh:
                    accepted.append(action)
                    self._count("sent")
                    if self.metrics is not None:
                        self.metrics.notifications.labels(action.channel, "sent").inc()
                state, _ = on_delivery(state, action.key, result.status, now)
                continue
            if fresh and sending.counted:
                self._count("refused")
                if self.metrics is not None:
                    self.metrics.notifications.labels(action.channel, "failed").inc()
            log.warning(
                "notifier: %s to %s refused (%s): falling back",
                action.key,
                action.masked_phone,
                result.error_message or result.error_code,
            )
            state, more = on_delivery(state, action.key, "failed", now)
            queue += more
        return state, accepted

    async def _deliver(self, notify: Notify, partition: int) -> _Sending:
        channel = self.channels.get(notify.channel)
        if channel is None:
            refused = SendResult(
                key=notify.key, status="failed", error_message=f"no {notify.channel} channel"
            )
            return _Sending(notify, refused, counted=False)
        try:
            message = OutboundMessage(
                key=notify.key,
                to=notify.phone,
                text=notify.render(self.ack_url(notify)),
                status_callback_url=self.callback_url(partition),
            )
        except ValueError as exc:
            return _Sending(
                notify, SendResult(key=notify.key, status="failed", error_message=str(exc))
            )
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self.executor, channel.send, message)
        except PermanentChannelError as exc:
            refused = SendResult(
                key=notify.key, status="failed", error_code=exc.code, error_message=exc.message
            )
            return _Sending(notify, refused)
        except TransientChannelError as exc:
            log.warning(
                "notifier: %s to %s not taken yet: %s", notify.key, notify.masked_phone, exc
            )
            return _Sending(notify, None)
        except Exception:  # a bug or an unexpected failure: keep the message, retry later
            log.exception("notifier: sending %s to %s failed", notify.key, notify.masked_phone)
            return _Sending(notify, None)
        log.info(
            "notifier: %s %s to %s by %s: %s%s",
            notify.kind,
            notify.key,
            notify.masked_phone,
            notify.channel,
            result.status,
            " (already sent)" if result.replayed else "",
        )
        return _Sending(notify, result)

    def _count(self, name: str) -> None:
        self.stats[name] = self.stats.get(name, 0) + 1

    # -- reading -----------------------------------------------------------------------

    def view(self, raw: bytes) -> dict[str, Any]:
        """An escalation state for people and the board: no phone number, only masked."""
        return escalation_view(decode_state(raw), self._wake_of)


def _ack_channel(state: EscalationState, level: int, person: str) -> str:
    """The channel an acknowledgement answers: that of the latest page to the person at that
    level (else to the person, else the policy's first channel)."""
    to_person = [s for s in state.sent if s.contact.person_id == person]
    at_level = [s for s in to_person if s.level == level]
    for sent in (at_level, to_person):
        if sent:
            return sent[-1].contact.channel
    return state.policy.channels[0] if state.policy.channels else "none"
