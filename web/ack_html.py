"""The acknowledgement page's HTML: labels in Chinese, the sections, the CSS and its policy.

One small, self-contained page (phone-sized, inline CSS, no external assets); a tiny inline
script only keeps the countdown running, and the Content-Security-Policy (:data:`CSP`) allows
exactly that script and style by hash. Every string from the data is escaped. The handlers
that answer with these pages are in web/ack_page.py.
"""

from __future__ import annotations

import base64
import hashlib
import html
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from deadlines.timefmt import CST
from escalation.links import AckClaim, AckError

__all__ = [
    "CSP",
    "HEADERS",
    "countdown",
    "esc",
    "page_html",
    "render_ack_page",
    "render_confirmation",
    "render_error",
]

STATUS_ZH = {
    "pending": "进行中",
    "paused": "计时暂停",
    "met": "按时完成",
    "late": "逾期完成",
    "missed": "已超时未完成",
    "unverifiable": "无法核实是否按时",
    "cancelled": "已取消",
}
KIND_ZH = {
    "opened": "开始计时",
    "warned": "到期预警",
    "breached": "超过时限",
    "met": "按时完成",
    "late": "逾期完成",
    "unverifiable": "已发布(无法核实时间)",
    "paused": "暂停计时",
    "resumed": "恢复计时",
    "restarted": "重新起算",
    "extended": "延长期限",
    "rejected": "操作未生效",
    "cancelled": "取消",
    "reopened": "重新开启",
    "rescheduled": "期限重算",
}
STAGE_ZH = {
    "watching": "监控中",
    "warned": "已预警",
    "breached": "已超时,催办中",
    "acknowledged": "已有人确认,停止催办",
    "stopped": "已停止",
}
MESSAGE_KIND_ZH = {
    "warned": "预警",
    "breached": "超时通知",
    "repeat": "重复催办",
    "escalated": "升级通知",
    "fallback": "改发",
}
DELIVERY_ZH = {
    "pending": "待回执",
    "queued": "排队中",
    "accepted": "已受理",
    "sending": "发送中",
    "sent": "已发送",
    "delivered": "已送达",
    "read": "已读",
    "failed": "发送失败",
    "undelivered": "未送达",
    "busy": "占线",
    "no-answer": "无人接听",
    "canceled": "已取消",
}
CHANNEL_ZH = {"sms": "短信", "voice": "语音"}
_FULFILLED = frozenset({"met", "late", "unverifiable"})

_CSS = """
*{box-sizing:border-box}
body{margin:0;background:#f2f3f5;color:#1d2129;font:16px/1.5 -apple-system,"PingFang SC",
"Hiragino Sans GB","Microsoft YaHei","Noto Sans CJK SC",sans-serif}
main{max-width:36rem;margin:0 auto;padding:12px}
h1{font-size:18px;margin:4px 0 12px}
h2{font-size:15px;margin:0 0 8px;color:#4e5969}
section{background:#fff;border-radius:10px;padding:14px;margin:0 0 12px}
.title{font-size:17px;font-weight:600;margin:0 0 6px;word-break:break-word}
dl{margin:0;display:grid;grid-template-columns:auto 1fr;gap:4px 12px}
dt{color:#86909c}dd{margin:0;word-break:break-word}
.badge{display:inline-block;padding:1px 8px;border-radius:9px;font-size:13px;background:#e8f3ff;
color:#165dff}
.badge.bad{background:#ffece8;color:#cb2634}.badge.ok{background:#e8ffea;color:#00a84f}
.countdown{text-align:center;padding:8px 0}
.cd-label{display:block;font-size:14px;color:#4e5969}
.cd-time{display:block;font-size:32px;font-weight:700;font-variant-numeric:tabular-nums}
.running .cd-time{color:#00a84f}.soon .cd-time{color:#ff7d00}.overdue .cd-time{color:#cb2634}
.due{text-align:center;color:#4e5969;font-size:14px}
button{width:100%;min-height:52px;border:0;border-radius:10px;background:#165dff;color:#fff;
font-size:18px;font-weight:600}
button:active{background:#0e42d2}
.who{margin:0 0 10px;color:#4e5969;font-size:14px}
.note{margin:8px 0 0;color:#00a84f;font-size:14px}
ol{margin:0;padding:0;list-style:none}
li{padding:6px 0;border-top:1px solid #f2f3f5;font-size:14px}
li:first-child{border-top:0}
.t{color:#86909c;font-variant-numeric:tabular-nums;margin-right:6px}
.d{display:block;color:#4e5969;word-break:break-word}
.ok-big{font-size:20px;font-weight:700;color:#00a84f;margin:0 0 6px}
.err-big{font-size:20px;font-weight:700;color:#cb2634;margin:0 0 6px}
footer{color:#86909c;font-size:12px;text-align:center;padding:4px 0 16px}
"""

_SCRIPT = """
(function(){var e=document.getElementById("countdown");if(!e)return;
var due=+e.getAttribute("data-due"),now=+e.getAttribute("data-now"),t0=Date.now();
var L=e.querySelector(".cd-label"),T=e.querySelector(".cd-time");
function p(n){return(n<10?"0":"")+n}
function f(s){var d=Math.floor(s/86400);s%=86400;
var t=p(Math.floor(s/3600))+":"+p(Math.floor(s%3600/60))+":"+p(s%60);return d?d+"天 "+t:t}
function u(){var s=due-(now+Math.floor((Date.now()-t0)/1000));
L.textContent=s<0?"已超时":"剩余";T.textContent=f(Math.abs(s));
e.className="countdown "+(s<0?"overdue":s<=3600?"soon":"running")}
u();setInterval(u,1000)})();
"""


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


#: Only this page's own inline style and script may run; forms post to this origin only.
CSP = (
    "default-src 'none'; "
    f"style-src {_csp_hash(_CSS)}; "
    f"script-src {_csp_hash(_SCRIPT)}; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
HEADERS: Mapping[str, str] = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "X-Robots-Tag": "noindex",
}


# ---------------------------------------------------------------------------------------
# Formatting


def esc(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _zh(labels: Mapping[str, str], value: object) -> str:
    text = "" if value is None else str(value)
    return labels.get(text, text)


def _epoch(value: object) -> int | None:
    """An RFC 3339 string (as the API gives) or epoch seconds, as epoch seconds."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=CST)
        return int(moment.timestamp())
    return None


def _cst(epoch: int, *, seconds: bool = False) -> str:
    moment = datetime.fromtimestamp(epoch, tz=CST)
    if seconds and moment.second:
        return moment.strftime("%Y-%m-%d %H:%M:%S")
    return moment.strftime("%Y-%m-%d %H:%M")


def _duration(seconds: int) -> str:
    days, rest = divmod(abs(seconds), 86_400)
    hms = f"{rest // 3600:02d}:{rest % 3600 // 60:02d}:{rest % 60:02d}"
    return f"{days}天 {hms}" if days else hms


def countdown(due_at: int, now: int) -> tuple[str, str, str]:
    """(label, time, css class): ``剩余 02:30:00`` before the deadline (the deadline second
    itself still counts as in time), ``已超时 00:00:01`` after it."""
    left = due_at - now
    if left < 0:
        return "已超时", _duration(left), "overdue"
    return "剩余", _duration(left), "soon" if left <= 3600 else "running"


def page_html(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="robots" content="noindex">'
        '<meta name="referrer" content="no-referrer">'
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>\n"
    )


def _obligation_section(
    obligation: Mapping[str, Any] | None, claim: AckClaim, title: str | None
) -> str:
    if not obligation:
        return (
            '<section id="obligation"><p class="title">'
            f"{esc(claim.obligation_id)}</p>"
            "<p>详情暂不可用 / details are not available right now; "
            "you can still acknowledge.</p></section>"
        )
    status = str(obligation.get("status") or "")
    badge = "bad" if status == "missed" else "ok" if status in _FULFILLED else ""
    name = title or obligation.get("title") or obligation.get("rule_id") or claim.obligation_id
    unit = obligation.get("unit_name") or obligation.get("unit")
    rows = [
        ("事项", obligation.get("subject_id")),
        ("单位", unit),
        ("规则", obligation.get("rule_id")),
        ("编号", obligation.get("id") or claim.obligation_id),
    ]
    cells = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows if v)
    return (
        '<section id="obligation">'
        f'<p class="title">{esc(name)}</p>'
        f'<p><span class="badge {badge}" id="status">{esc(STATUS_ZH.get(status, status))}'
        f"</span></p><dl>{cells}</dl></section>"
    )


def _deadline_section(obligation: Mapping[str, Any] | None, now: int) -> str:
    if not obligation:
        return ""
    due = _epoch(obligation.get("due_at"))
    if due is None:
        return ""
    status = str(obligation.get("status") or "")
    due_line = f'<p class="due">期限:北京时间 {esc(_cst(due, seconds=True))}</p>'
    if status in _FULFILLED:
        done = _epoch(obligation.get("fulfilled_at"))
        when = _cst(done) if done is not None else "-"
        if done is not None and obligation.get("fulfilled_date_only"):
            when = when[:10]
        return (
            '<section id="deadline"><div class="countdown running">'
            f'<span class="cd-label">{esc(STATUS_ZH.get(status, status))}</span>'
            f'<span class="cd-time">{esc(when)}</span></div>{due_line}</section>'
        )
    if status in ("cancelled", "paused"):
        return (
            '<section id="deadline"><div class="countdown running">'
            f'<span class="cd-label">{esc(STATUS_ZH[status])}</span></div>{due_line}</section>'
        )
    label, left, css = countdown(due, now)
    return (
        '<section id="deadline">'
        f'<div class="countdown {css}" id="countdown" data-due="{due}" data-now="{now}">'
        f'<span class="cd-label">{label}</span><span class="cd-time">{left}</span></div>'
        f"{due_line}</section>"
    )


def _acked_by(escalation: Mapping[str, Any] | None, claim: AckClaim) -> int | None:
    for ack in (escalation or {}).get("acks") or []:
        same = ack.get("level") == claim.level and ack.get("person_id") == claim.person_id
        if same and ack.get("current", True):
            return _epoch(ack.get("at"))
    return None


def _ack_section(claim: AckClaim, escalation: Mapping[str, Any] | None) -> str:
    done = _acked_by(escalation, claim)
    note = (
        f'<p class="note" id="already">您已于 {esc(_cst(done))} 确认收到 / already acknowledged</p>'
        if done is not None
        else ""
    )
    return (
        '<section id="ack">'
        f'<p class="who">第 {claim.level} 级通知 · 接收人 {esc(claim.person_id)}</p>'
        '<form method="post"><button type="submit" id="ack-button">确认收到 / Acknowledge'
        f"</button></form>{note}</section>"
    )


def _escalation_section(escalation: Mapping[str, Any] | None) -> str:
    if not escalation:
        return ""
    stage = str(escalation.get("stage") or "")
    rows = [("状态", STAGE_ZH.get(stage, stage))]
    if escalation.get("level"):
        rows.append(("当前级别", f"第 {escalation['level']} 级"))
    nxt = _epoch(escalation.get("next_at"))
    if nxt is not None:
        rows.append(("下次催办", _cst(nxt)))
    cells = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in rows)
    items = []
    for ack in escalation.get("acks") or []:
        at = _epoch(ack.get("at"))
        items.append(
            f'<li><span class="t">{esc(_cst(at) if at is not None else "")}</span>'
            f"确认 · 第 {esc(ack.get('level'))} 级 · {esc(ack.get('person_id'))}</li>"
        )
    for msg in (escalation.get("messages") or [])[-10:]:
        at = _epoch(msg.get("at"))
        kind = str(msg.get("kind") or "")
        items.append(
            f'<li><span class="t">{esc(_cst(at) if at is not None else "")}</span>'
            f"{esc(MESSAGE_KIND_ZH.get(kind, kind))} · 第 {esc(msg.get('level'))} 级 · "
            f"{esc(msg.get('person_id'))} · {esc(_zh(CHANNEL_ZH, msg.get('channel')))} · "
            f"{esc(_zh(DELIVERY_ZH, msg.get('status')))}</li>"
        )
    listing = f"<ol>{''.join(items)}</ol>" if items else ""
    return f'<section id="escalation"><h2>催办</h2><dl>{cells}</dl>{listing}</section>'


def _timeline_section(obligation: Mapping[str, Any] | None) -> str:
    entries = (obligation or {}).get("timeline") or []
    if not entries:
        return ""
    items = []
    for entry in entries:
        at = _epoch(entry.get("at"))
        kind = str(entry.get("kind") or "")
        detail = " · ".join(str(x) for x in (entry.get("detail"), entry.get("event_id")) if x)
        items.append(
            f'<li><span class="t">{esc(_cst(at) if at is not None else "")}</span>'
            f"{esc(KIND_ZH.get(kind, kind))}"
            + (f'<span class="d">{esc(detail)}</span>' if detail else "")
            + "</li>"
        )
    return f'<section id="timeline"><h2>时间线(北京时间)</h2><ol>{"".join(items)}</ol></section>'


def render_ack_page(
    obligation: Mapping[str, Any] | None,
    claim: AckClaim,
    now: int,
    *,
    title: str | None = None,
    escalation: Mapping[str, Any] | None = None,
) -> str:
    """The page a link opens: obligation, deadline, acknowledge button, escalation, timeline.
    ``obligation`` may be None (details unavailable: the button still works)."""
    body = (
        "<h1>政务时限提醒 · 确认收到</h1>"
        + _obligation_section(obligation, claim, title)
        + _deadline_section(obligation, now)
        + _ack_section(claim, escalation)
        + _escalation_section(escalation)
        + _timeline_section(obligation)
        + f"<footer>链接有效期至 {esc(_cst(claim.expires_at))}(北京时间)</footer>"
        + f"<script>{_SCRIPT}</script>"
    )
    return page_html("确认收到 · 政务时限", body)


def render_confirmation(
    claim: AckClaim,
    at: int,
    obligation: Mapping[str, Any] | None = None,
    *,
    title: str | None = None,
) -> str:
    """The page after acknowledging."""
    body = (
        '<h1>政务时限提醒</h1><section id="confirmed">'
        '<p class="ok-big">已确认收到 / Acknowledged</p>'
        f"<p>第 {claim.level} 级 · {esc(claim.person_id)} · 北京时间 {esc(_cst(at))}</p>"
        "<p>已记录您的确认。超时后确认:重复提醒和升级停止;超时前确认:仅作记录,"
        "超时时仍会通知。<br>Your acknowledgement is recorded. After the deadline it stops "
        "the repeats and the escalation; before it, it is only recorded and the breach is "
        "still paged.</p></section>"
        + _obligation_section(obligation, claim, title)
        + '<footer><a href="">返回 / Back</a></footer>'
    )
    return page_html("已确认 · 政务时限", body)


def render_error(error: AckError) -> str:
    """The page for a link that cannot be used (bad, unknown, forged or expired)."""
    english = str(error).split(":", 1)[0]
    body = (
        '<h1>政务时限提醒</h1><section id="error">'
        f'<p class="err-big">{esc(error.message_zh)}</p>'
        f"<p>{esc(english[:1].upper() + english[1:])}.</p>"
        "<p>请使用最新短信中的链接,或联系值班室。<br>"
        "Use the link in the latest message, or call the duty office.</p></section>"
    )
    return page_html("链接无效 · 政务时限", body)
