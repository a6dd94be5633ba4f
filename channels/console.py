"""The console channel, the default for ``make run``: prints each message, keeps a record.

``[SMS to +86138****8000] text`` goes to a stream (stdout by default) and the message is kept
in :attr:`ConsoleChannel.sent`. It never fails: a broken stream is logged and the message is
still recorded as sent. Idempotent like every channel: a redelivered key is not printed again.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from typing import TextIO

from channels.base import MemorySentLog, OutboundMessage, SendResult, SentLog

__all__ = ["ConsoleChannel", "ConsoleRecord"]

log = logging.getLogger("govclock.channels.console")


@dataclass(frozen=True, slots=True)
class ConsoleRecord:
    key: str
    to: str = field(repr=False)
    masked_to: str
    text: str
    provider_id: str
    status_callback_url: str | None
    at: float


class ConsoleChannel:
    """Prints and records; ``label`` names the medium in the printed line (``SMS``)."""

    def __init__(
        self,
        stream: TextIO | None = None,
        *,
        sent_log: SentLog | None = None,
        label: str = "SMS",
        name: str = "console",
    ) -> None:
        self._stream = stream
        self._log: SentLog = sent_log if sent_log is not None else MemorySentLog()
        self._label = label
        self._name = name
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self.sent: list[ConsoleRecord] = []

    @property
    def name(self) -> str:
        return self._name

    def send(self, message: OutboundMessage) -> SendResult:
        with self._lock:
            prior = self._log.get(message.key)
            if prior is not None:
                return replace(prior, replayed=True)
            now = time.time()
            self._log.begin(message.key, now)
            attempts = self._log.note_attempt(message.key)
            provider_id = f"console-{next(self._ids)}"
            line = f"[{self._label} to {message.masked_to}] {message.text}"
            try:
                stream = self._stream if self._stream is not None else sys.stdout
                print(line, file=stream, flush=True)
            except Exception as exc:  # never fail: the record below is what counts
                log.warning("console channel could not print %s: %s", message.key, exc)
            self.sent.append(
                ConsoleRecord(
                    key=message.key,
                    to=message.to,
                    masked_to=message.masked_to,
                    text=message.text,
                    provider_id=provider_id,
                    status_callback_url=message.status_callback_url,
                    at=now,
                )
            )
            result = SendResult(
                key=message.key,
                status="sent",
                provider_id=provider_id,
                attempts=attempts,
                channel=self._name,
            )
            self._log.record(result)
            log.info("%s to %s: %s", self._name, message.masked_to, message.key)
            return result
