"""The escalation messages: their texts, and the guard against sending one text too often.

:func:`compose` writes the text of a warning, breach page, repeat or escalation within one SMS
segment (:data:`MAX_TEXT_CHARS`, not counting the ack link), naming times in Beijing time
(UTC+8, as the deadlines are set) and in Chinese (``3月10日17:30``, ``2小时5分``).
:func:`guard_text` keeps a number from getting the same text three times in 24 hours.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import date

from deadlines.calendar import day_of
from deadlines.escalation_state import ACK_URL, EscalationState
from deadlines.roster import mask_phone

__all__ = [
    "DAY",
    "MAX_TEXT_CHARS",
    "compose",
    "day_and_time",
    "guard_text",
    "time_left",
    "time_of_day",
]

#: One UCS-2 SMS segment; texts are kept within it, not counting the ack link.
MAX_TEXT_CHARS = 70
DAY = 86_400


def time_of_day(t: int) -> str:
    s = (t + 8 * 3600) % DAY
    return f"{s // 3600:02d}:{s % 3600 // 60:02d}"


def day_and_time(t: int) -> str:
    d = date.fromordinal(day_of(t))
    return f"{d.month}月{d.day}日{time_of_day(t)}"


def time_left(seconds: int) -> str:
    minutes = max(seconds, 0) // 60
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days}天{hours}小时" if hours else f"{days}天"
    if hours:
        return f"{hours}小时{mins}分" if mins else f"{hours}小时"
    return f"{mins}分钟"


def guard_text(
    history: Iterable[tuple[str, str, int]], phone: str, text: str, now: int
) -> tuple[str | None, str]:
    """Never the same text three times in 24 h to one number.

    ``history`` holds (phone, text, at) of messages sent. Returns the text to send (the same,
    or varied with a ``(#n)`` marker before the link) and why it was varied; or None and why
    it was dropped."""
    recent = [t for p, t, at in history if p == phone and now - DAY < at <= now]
    if recent.count(text) < 2:
        return text, ""
    head, sep, rest = text.rpartition(" 确认")
    for n in range(2, 10):
        varied = f"{head}(#{n}){sep}{rest}" if sep else f"{text}(#{n})"
        if recent.count(varied) < 2:
            return varied, f"same text twice to {mask_phone(phone)} in 24 h: varied (#{n})"
    return None, f"same text twice to {mask_phone(phone)} in 24 h and no variant left: dropped"


def _fit(make: Callable[[str, str], str], name: str, subject: str) -> str:
    """Shorten the subject, then the name, until the text (without the link) fits."""

    def size(text: str) -> int:
        return len(text.replace(ACK_URL, ""))

    text = make(name, subject)
    while size(text) > MAX_TEXT_CHARS and len(subject) > 6:
        subject = subject[: max(5, len(subject) - (size(text) - MAX_TEXT_CHARS) - 1)] + "…"
        text = make(name, subject)
    while size(text) > MAX_TEXT_CHARS and len(name) > 4:
        name = name[:-2] + "…"
        text = make(name, subject)
    return text


def compose(state: EscalationState, kind: str, now: int, level: int = 1, repeat: int = 0) -> str:
    """The message for a warning, breach, repeat or escalation, within MAX_TEXT_CHARS where
    the subject and name allow it (the ack link is extra). The send time is always in it."""
    due, sent = day_and_time(state.due_at), time_of_day(now)
    tail = f"{sent}发 确认{ACK_URL}"
    if kind == "warned":

        def make(n: str, s: str) -> str:
            return (
                f"【政务时限】{n}·{s}:北京时间{due}到期,剩{time_left(state.due_at - now)}。{tail}"
            )

    elif kind == "escalated":

        def make(n: str, s: str) -> str:
            return f"【政务时限·{level}级】{n}·{s}:已超北京时间{due}时限,未获确认,请督办。{tail}"

    elif kind == "repeat":

        def make(n: str, s: str) -> str:
            return f"【政务时限】第{repeat + 1}次:{n}·{s}:已超北京时间{due}时限,未获确认。{tail}"

    else:

        def make(n: str, s: str) -> str:
            return f"【政务时限】{n}·{s}:已超北京时间{due}时限,请立即处置。{tail}"

    return _fit(make, state.short_name, state.subject_id)
