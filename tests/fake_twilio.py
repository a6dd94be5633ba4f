"""A fake Twilio Messages API on 127.0.0.1, for the real ``twilio`` SDK to talk to.

::

    with FakeTwilio() as fake, CallbackSink() as sink:
        client = Client(fake.account_sid, fake.auth_token, http_client=…)  # see twilio_sms
        fake.fail_next(status=500)                 # next create → HTTP 500
        fake.throttle_next(retry_after=2)          # next create → 429, Retry-After: 2
        fake.delay_next(1.5)                       # next create: accepted, answered 1.5 s late
        fake.final_status_next("undelivered", 30003)
        …
        fake.messages, fake.requests, fake.callbacks, sink.received

What it implements, following Twilio's OpenAPI description
(``../shared/corpus/twilio/twilio_api_v2010.json``, operation ``CreateMessage``):

* ``POST /2010-04-01/Accounts/{AccountSid}/Messages.json``: HTTP Basic auth with the account
  SID and auth token (401 / 20003 otherwise), a form-encoded body; ``To`` required, one of
  ``From``/``MessagingServiceSid`` and one of ``Body``/``MediaUrl``/``ContentSid``
  (``x-twilio.conditional``), parameter names and patterns as in the spec (unknown names are
  refused: stricter than Twilio, to catch client typos). Answers 201 with a Message resource
  shaped like the spec's ``create`` example (``sid`` ``SM…``, ``status`` ``queued``), or 400
  with Twilio's error JSON (``code``, ``message``, ``more_info``, ``status``): 21211 for a bad
  ``To`` (E.164; +86 must be an 11-digit mobile number), 21610 for a number in
  :attr:`FakeTwilio.unsubscribed`.
* ``GET …/Messages.json`` (``To``, ``From``, ``PageSize``; newest first) and
  ``GET …/Messages/{Sid}.json``: what the channel uses to find an earlier attempt.
* Status callbacks: after a create with ``StatusCallback``, POSTs ``sent`` then ``delivered``
  (or the injected final status with ``ErrorCode``) to that URL, form-encoded with the fields
  Twilio sends (``MessageSid``, ``MessageStatus``, ``ErrorCode``, ``AccountSid``, ``From``,
  ``To``, ``SmsSid``, ``SmsStatus``, ``ApiVersion``) and a valid ``X-Twilio-Signature``,
  computed here with Twilio's documented algorithm (:func:`twilio_signature`: HMAC-SHA1 of
  the URL followed by the sorted form fields, keyed with the auth token, base64).

If the spec file is absent, parameter checks fall back to a built-in minimum and
:attr:`FakeTwilio.spec_skipped` says why (a warning is logged once).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import copy
import hashlib
import hmac
import itertools
import json
import logging
import math
import re
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlencode, urlsplit

from aiohttp import ClientSession, ClientTimeout, web

__all__ = [
    "SPEC_PATH",
    "CallbackSink",
    "FakeTwilio",
    "Received",
    "RecordedRequest",
    "SentCallback",
    "TwilioSpec",
    "twilio_signature",
]

log = logging.getLogger("tests.fake_twilio")

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus" / "twilio"
SPEC_PATH = CORPUS / "twilio_api_v2010.json"
EXAMPLES_PATH = CORPUS / "message_create_201_examples.json"
MESSAGES_PATH = "/2010-04-01/Accounts/{AccountSid}/Messages.json"

_E164 = re.compile(r"^\+[1-9]\d{1,14}$")
_CN_MOBILE = re.compile(r"^\+861[3-9]\d{9}$")
_GSM7 = re.compile(
    r"^[A-Za-z0-9 @£$¥èéùìòÇØøÅå_ΦΓΛΩΠΨΣΘΞÆæßÉ!\"#¤%&'()*+,\-./:;<=>?¡ÄÖÑÜ§¿äöñüà\n\r]*$"
)

T = TypeVar("T")


def twilio_signature(auth_token: str, url: str, params: Mapping[str, str]) -> str:
    """Twilio's ``X-Twilio-Signature``: base64(HMAC-SHA1(auth token, url + k1v1k2v2…)) with the
    POST fields sorted by name (written here from Twilio's documentation, independently of the
    SDK's ``RequestValidator``, so a test can check one against the other)."""
    payload = url + "".join(f"{k}{params[k]}" for k in sorted(params))
    digest = hmac.new(auth_token.encode(), payload.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


# ---------------------------------------------------------------------------------------
# The spec


def _snake_to_pascal(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


@dataclass(frozen=True)
class TwilioSpec:
    """What the fake needs from ``twilio_api_v2010.json``."""

    source: str
    create_properties: Mapping[str, Mapping[str, Any]]
    create_required: tuple[str, ...]
    create_conditional: tuple[tuple[str, ...], ...]  # form names, one of each group required
    account_sid_pattern: str
    message_properties: tuple[str, ...]
    message_statuses: tuple[str, ...]
    list_parameters: tuple[str, ...]
    create_example: Mapping[str, Any]

    @classmethod
    def load(cls, path: Path = SPEC_PATH) -> TwilioSpec:
        doc = json.loads(path.read_text(encoding="utf-8"))
        item = doc["paths"][MESSAGES_PATH]
        post = item["post"]
        schema = post["requestBody"]["content"]["application/x-www-form-urlencoded"]["schema"]
        props = schema["properties"]
        by_lower = {name.lower(): name for name in props}
        conditional = tuple(
            tuple(by_lower[_snake_to_pascal(n).lower()] for n in group)
            for group in post.get("x-twilio", {}).get("conditional", [])
        )
        (account,) = [p for p in post["parameters"] if p["name"] == "AccountSid"]
        message = doc["components"]["schemas"]["api.v2010.account.message"]
        examples = post["responses"]["201"]["content"]["application/json"]["examples"]
        return cls(
            source=str(path),
            create_properties=props,
            create_required=tuple(schema.get("required", [])),
            create_conditional=conditional,
            account_sid_pattern=account["schema"]["pattern"],
            message_properties=tuple(message["properties"]),
            message_statuses=tuple(doc["components"]["schemas"]["message_enum_status"]["enum"]),
            list_parameters=tuple(p["name"] for p in item["get"]["parameters"]),
            create_example=examples["create"]["value"],
        )


_FALLBACK_EXAMPLE: Mapping[str, Any] = {
    "account_sid": "ACaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    "api_version": "2010-04-01",
    "body": "",
    "date_created": "",
    "date_sent": None,
    "date_updated": "",
    "direction": "outbound-api",
    "error_code": None,
    "error_message": None,
    "from": None,
    "num_media": "0",
    "num_segments": "1",
    "price": None,
    "price_unit": None,
    "messaging_service_sid": None,
    "sid": "",
    "status": "queued",
    "subresource_uris": {},
    "to": "",
    "uri": "",
}


# ---------------------------------------------------------------------------------------
# A server on its own event loop in a thread


class _LoopServer:
    def __init__(self, app: web.Application) -> None:
        self._app = app
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._runner: web.AppRunner | None = None
        self.port = 0

    def start(self) -> None:
        self._thread.start()
        self.call(self._start())

    async def _start(self) -> None:
        self._runner = web.AppRunner(self._app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])

    def call(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> None:
        """Run ``coro`` in the background (call from the loop's thread)."""
        task = self._loop.create_task(coro)
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)

    def stop(self) -> None:
        if self._runner is not None:
            with contextlib.suppress(Exception):
                self.call(self._runner.cleanup())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        if not self._thread.is_alive():
            self._loop.close()


_BACKGROUND: set[asyncio.Task[Any]] = set()


def _wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.01)


# ---------------------------------------------------------------------------------------
# The fake


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    params: dict[str, str]  # form fields (POST) or query (GET); last value of repeated names
    status: int  # what the fake answered (0: the client went away before the answer)
    at: float
    note: str = ""  # which fault, if any


@dataclass(frozen=True)
class SentCallback:
    url: str
    params: dict[str, str]
    signature: str
    answered: int | None  # the receiver's HTTP status; None: could not deliver
    error: str | None = None


@dataclass
class _Fault:
    target: str  # "create" | "list"
    kind: str  # "status" | "delay"
    status: int = 500
    code: int | None = None
    retry_after: float | None = None
    seconds: float = 0.0
    accept_first: bool = True


@dataclass
class FakeTwilio:
    """The fake Messages API. Start with ``with FakeTwilio() as fake`` or ``start()``."""

    account_sid: str = field(default_factory=lambda: "AC" + uuid.uuid4().hex)
    auth_token: str = field(default_factory=lambda: uuid.uuid4().hex)
    spec_path: Path | None = SPEC_PATH
    callback_delay: float = 0.02  # seconds between the create and each status callback
    unsubscribed: set[str] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.spec: TwilioSpec | None = None
        self.spec_skipped: str | None = None
        if self.spec_path is not None and self.spec_path.is_file():
            self.spec = TwilioSpec.load(self.spec_path)
        else:
            self.spec_skipped = (
                f"Twilio OpenAPI spec not found at {self.spec_path}: request parameters are "
                "checked against a built-in minimum only, not the spec"
            )
            log.warning("%s", self.spec_skipped)
        self.messages: dict[str, dict[str, Any]] = {}  # sid -> resource, in creation order
        self.requests: list[RecordedRequest] = []
        self.callbacks: list[SentCallback] = []
        self._faults: deque[_Fault] = deque()
        self._finals: deque[tuple[str, int | None]] = deque()
        self._lock = threading.Lock()
        self._session: ClientSession | None = None
        app = web.Application()
        app.router.add_post(MESSAGES_PATH, self._create)
        app.router.add_get(MESSAGES_PATH, self._list)
        app.router.add_get("/2010-04-01/Accounts/{AccountSid}/Messages/{Sid}.json", self._fetch)
        self._server = _LoopServer(app)

    # -- lifecycle and inspection --------------------------------------------------------

    def start(self) -> FakeTwilio:
        self._server.start()
        self._server.call(self._open_session())
        return self

    async def _open_session(self) -> None:
        self._session = ClientSession(timeout=ClientTimeout(total=5))

    def stop(self) -> None:
        if self._session is not None:
            with contextlib.suppress(Exception):
                self._server.call(self._session.close())
        self._server.stop()

    def __enter__(self) -> FakeTwilio:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._server.port}"

    def reset(self) -> None:
        """Forget messages, requests, callbacks and pending faults (between tests)."""
        with self._lock:
            self.messages.clear()
            self.requests.clear()
            self.callbacks.clear()
            self._faults.clear()
            self._finals.clear()
            self.unsubscribed.clear()

    def creates(self) -> list[RecordedRequest]:
        return [r for r in self.requests if r.method == "POST"]

    def wait_for_callbacks(self, n: int, timeout: float = 5.0) -> list[SentCallback]:
        _wait_until(lambda: len(self.callbacks) >= n, timeout, f"{n} status callbacks")
        return list(self.callbacks)

    # -- failure injection ---------------------------------------------------------------

    def fail_next(
        self, times: int = 1, *, status: int = 500, code: int | None = None, target: str = "create"
    ) -> None:
        """The next ``times`` requests (creates, or lists) answer ``status`` (nothing created)."""
        with self._lock:
            for _ in range(times):
                self._faults.append(_Fault(target, "status", status=status, code=code))

    def throttle_next(
        self, times: int = 1, *, retry_after: float | None = 1, target: str = "create"
    ) -> None:
        """The next ``times`` requests answer 429 / 20429 with ``Retry-After``."""
        with self._lock:
            for _ in range(times):
                self._faults.append(
                    _Fault(target, "status", status=429, code=20429, retry_after=retry_after)
                )

    def delay_next(
        self, seconds: float, times: int = 1, *, accept_first: bool = True, target: str = "create"
    ) -> None:
        """The next ``times`` requests are answered ``seconds`` late. ``accept_first``: the
        message is created (and its callbacks start) before the wait, as when Twilio took it
        but the answer was lost; otherwise it is processed only after the wait."""
        with self._lock:
            for _ in range(times):
                self._faults.append(
                    _Fault(target, "delay", seconds=seconds, accept_first=accept_first)
                )

    def final_status_next(
        self, status: str = "undelivered", error_code: int | None = 30003
    ) -> None:
        """The next created message ends ``status`` (with ``ErrorCode``) instead of delivered."""
        with self._lock:
            self._finals.append((status, error_code))

    # -- handlers ------------------------------------------------------------------------

    def _record(
        self, request: web.Request, params: Mapping[str, str], status: int, note: str
    ) -> None:
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    request.method, request.path, dict(params), status, time.time(), note
                )
            )

    def _take_fault(self, target: str) -> _Fault | None:
        with self._lock:
            if self._faults and self._faults[0].target == target:
                return self._faults.popleft()
            return None

    def _authorized(self, request: web.Request) -> bool:
        header = request.headers.get("Authorization", "")
        if not header.startswith("Basic "):
            return False
        try:
            user, _, password = base64.b64decode(header[6:]).decode().partition(":")
        except ValueError:
            return False
        return hmac.compare_digest(f"{user}:{password}", f"{self.account_sid}:{self.auth_token}")

    def _check_account(self, request: web.Request) -> web.Response | None:
        if not self._authorized(request):
            return _error(401, 20003, "Authenticate")
        sid = request.match_info["AccountSid"]
        pattern = self.spec.account_sid_pattern if self.spec else r"^AC[0-9a-fA-F]{32}$"
        if not re.match(pattern, sid) or sid != self.account_sid:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return None

    async def _fault_response(self, fault: _Fault) -> web.Response:
        headers = {}
        if fault.retry_after is not None:
            headers["Retry-After"] = f"{fault.retry_after:g}"
        if fault.code is None:
            return web.Response(status=fault.status, text="Internal Server Error", headers=headers)
        message = "Too Many Requests" if fault.status == 429 else "Internal Server Error"
        return _error(fault.status, fault.code, message, headers)

    async def _create(self, request: web.Request) -> web.StreamResponse:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        problem = self._check_account(request)
        if problem is not None:
            self._record(request, params, problem.status, "auth")
            return problem
        if request.content_type != "application/x-www-form-urlencoded":
            self._record(request, params, 400, "content-type")
            return _error(400, 20001, "Content-Type must be application/x-www-form-urlencoded")
        fault = self._take_fault("create")
        if fault is not None and fault.kind == "status":
            self._record(request, params, fault.status, f"injected {fault.status}")
            return await self._fault_response(fault)
        if fault is not None and fault.kind == "delay" and not fault.accept_first:
            await asyncio.sleep(fault.seconds)
        invalid = self._validate_create(params)
        if invalid is not None:
            self._record(request, params, invalid.status, "invalid")
            return invalid
        resource = self._new_message(params)
        if fault is not None and fault.kind == "delay" and fault.accept_first:
            self._record(request, params, 201, f"accepted, answered {fault.seconds:g}s late")
            await asyncio.sleep(fault.seconds)
        else:
            note = f"answered {fault.seconds:g}s late" if fault is not None else ""
            self._record(request, params, 201, note)
        return web.json_response(resource, status=201)

    def _validate_create(self, params: Mapping[str, str]) -> web.Response | None:
        if self.spec is not None:
            unknown = sorted(set(params) - set(self.spec.create_properties))
            if unknown:
                return _error(400, 20001, f"Unknown parameters: {', '.join(unknown)}")
            required = self.spec.create_required
            conditional = self.spec.create_conditional
            for name, value in params.items():
                pattern = self.spec.create_properties[name].get("pattern")
                if pattern and not re.match(pattern, value):
                    return _error(400, 20001, f"Invalid {name}")
        else:
            required = ("To",)
            conditional = (("From", "MessagingServiceSid"), ("Body", "MediaUrl", "ContentSid"))
        if any(not params.get(name) for name in required):
            return _error(400, 21604, "A 'To' phone number is required.")
        for group in conditional:
            if not any(params.get(name) for name in group):
                if "From" in group:
                    return _error(400, 21603, "A 'From' phone number is required.")
                return _error(400, 21602, "Message body is required.")
        to = params["To"]
        if not _E164.match(to) or (to.startswith("+86") and not _CN_MOBILE.match(to)):
            return _error(400, 21211, f"Invalid 'To' Phone Number: {to}")
        if to in self.unsubscribed:
            return _error(400, 21610, "Attempt to send to unsubscribed recipient")
        callback = params.get("StatusCallback")
        if callback is not None:
            parts = urlsplit(callback)
            if parts.scheme not in ("http", "https") or not parts.hostname or "_" in parts.hostname:
                return _error(400, 21609, "Invalid StatusCallback url")
        return None

    def _new_message(self, params: Mapping[str, str]) -> dict[str, Any]:
        example = self.spec.create_example if self.spec is not None else _FALLBACK_EXAMPLE
        resource = copy.deepcopy(dict(example))
        sid = "SM" + uuid.uuid4().hex
        now = format_datetime(datetime.now(UTC))
        uri = f"/2010-04-01/Accounts/{self.account_sid}/Messages/{sid}.json"
        body = params.get("Body", "")
        resource.update(
            account_sid=self.account_sid,
            sid=sid,
            to=params["To"],
            body=body,
            status="queued",
            date_created=now,
            date_updated=now,
            date_sent=None,
            error_code=None,
            error_message=None,
            price=None,
            price_unit=None,
            num_segments=str(_segments(body)),
            num_media="0",
            uri=uri,
            subresource_uris={"media": uri.replace(".json", "/Media.json")},
            messaging_service_sid=params.get("MessagingServiceSid"),
            **{"from": params.get("From")},
        )
        with self._lock:
            self.messages[sid] = resource
            final = self._finals.popleft() if self._finals else ("delivered", None)
        callback = params.get("StatusCallback")
        if callback:
            self._server.spawn(self._send_callbacks(sid, callback, final))
        return resource

    async def _send_callbacks(self, sid: str, url: str, final: tuple[str, int | None]) -> None:
        status, error_code = final
        steps: list[tuple[str, int | None]] = [("sent", None)] if status != "failed" else []
        steps.append((status, error_code))
        for step_status, step_code in steps:
            await asyncio.sleep(self.callback_delay)
            resource = self.messages.get(sid)
            if resource is None:
                return
            now = format_datetime(datetime.now(UTC))
            resource.update(status=step_status, date_updated=now)
            if step_status == "sent":
                resource["date_sent"] = now
            if step_code is not None:
                resource.update(error_code=step_code, error_message=None)
            params = {
                "AccountSid": self.account_sid,
                "ApiVersion": "2010-04-01",
                "MessageSid": sid,
                "SmsSid": sid,
                "MessageStatus": step_status,
                "SmsStatus": step_status,
                "To": resource["to"],
            }
            if resource.get("from"):
                params["From"] = resource["from"]
            if resource.get("messaging_service_sid"):
                params["MessagingServiceSid"] = resource["messaging_service_sid"]
            if step_code is not None:
                params["ErrorCode"] = str(step_code)
            signature = twilio_signature(self.auth_token, url, params)
            answered: int | None = None
            error: str | None = None
            try:
                assert self._session is not None
                async with self._session.post(
                    url,
                    data=params,
                    headers={
                        "X-Twilio-Signature": signature,
                        "I-Twilio-Idempotency-Token": uuid.uuid4().hex,
                    },
                ) as response:
                    answered = response.status
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            with self._lock:
                self.callbacks.append(SentCallback(url, params, signature, answered, error))

    async def _list(self, request: web.Request) -> web.StreamResponse:
        query = {k: v for k, v in request.query.items()}
        problem = self._check_account(request)
        if problem is not None:
            self._record(request, query, problem.status, "auth")
            return problem
        if self.spec is not None:
            unknown = sorted(set(query) - set(self.spec.list_parameters))
            if unknown:
                self._record(request, query, 400, "invalid")
                return _error(400, 20001, f"Unknown parameters: {', '.join(unknown)}")
        fault = self._take_fault("list")
        if fault is not None and fault.kind == "status":
            self._record(request, query, fault.status, f"injected {fault.status}")
            return await self._fault_response(fault)
        if fault is not None:
            await asyncio.sleep(fault.seconds)
        page_size = int(query.get("PageSize", "50"))
        with self._lock:
            found = [
                m
                for m in reversed(self.messages.values())
                if ("To" not in query or m["to"] == query["To"])
                and ("From" not in query or m["from"] == query["From"])
            ][:page_size]
        self._record(request, query, 200, "")
        uri = f"{request.path}?{urlencode(query)}"
        return web.json_response(
            {
                "messages": found,
                "end": max(0, len(found) - 1),
                "first_page_uri": uri,
                "next_page_uri": None,
                "page": 0,
                "page_size": page_size,
                "previous_page_uri": None,
                "start": 0,
                "uri": uri,
            }
        )

    async def _fetch(self, request: web.Request) -> web.StreamResponse:
        problem = self._check_account(request)
        if problem is not None:
            return problem
        resource = self.messages.get(request.match_info["Sid"])
        self._record(request, {}, 200 if resource else 404, "")
        if resource is None:
            return _error(404, 20404, f"The requested resource {request.path} was not found")
        return web.json_response(resource)


def _error(
    status: int, code: int, message: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.json_response(
        {
            "code": code,
            "message": message,
            "more_info": f"https://www.twilio.com/docs/errors/{code}",
            "status": status,
        },
        status=status,
        headers=dict(headers or {}),
    )


def _segments(body: str) -> int:
    if _GSM7.match(body):
        return 1 if len(body) <= 160 else math.ceil(len(body) / 153)
    units = len(body.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


# ---------------------------------------------------------------------------------------
# A receiver for status callbacks


@dataclass(frozen=True)
class Received:
    url: str  # the full URL as requested (what the signature covers)
    params: dict[str, str]
    headers: dict[str, str]


class CallbackSink:
    """An HTTP server on 127.0.0.1 that records every POST (status callbacks)."""

    def __init__(self, answer: int = 204) -> None:
        self.answer = answer
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._server = _LoopServer(app)

    def start(self) -> CallbackSink:
        self._server.start()
        return self

    def stop(self) -> None:
        self._server.stop()

    def __enter__(self) -> CallbackSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def url(self, path: str = "/v1/channels/twilio/status") -> str:
        return f"http://127.0.0.1:{self._server.port}{path}"

    def reset(self) -> None:
        with self._lock:
            self.received.clear()

    def wait_for(self, n: int, timeout: float = 5.0) -> list[Received]:
        _wait_until(lambda: len(self.received) >= n, timeout, f"{n} callbacks at the sink")
        with self._lock:
            return list(self.received)

    async def _handle(self, request: web.Request) -> web.Response:
        form = await request.post()
        with self._lock:
            self.received.append(
                Received(
                    url=f"http://127.0.0.1:{self._server.port}{request.path_qs}",
                    params={k: str(v) for k, v in form.items()},
                    headers=dict(request.headers),
                )
            )
        return web.Response(status=self.answer)
