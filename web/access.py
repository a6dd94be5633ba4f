"""Who may call which route: closed by default off loopback (docs/security.md).

Every request is put in one of four classes by the route it matched (aiohttp's resource
pattern, so what is checked is what will answer, whatever the spelling of the path):

- **open**: ``/healthz``, ``/readyz``, ``/metrics`` (probes and the scrape; restrict
  ``/metrics`` in the network, docs/security.md);
- **public**: the paths a public proxy may expose (``PUBLIC_PATHS`` in web/routes.py), each
  checking its caller itself (HMAC signatures, signed links, Twilio's signature);
- **internal**: anything under ``/v1/internal/``, and any request bearing
  ``X-Govclock-Forwarded`` (a worker calling another): it needs the cluster credential,
  ``X-Govclock-Cluster: <unix seconds>:<hex HMAC-SHA256(secret, METHOD\\npath?query\\nseconds)>``,
  within :data:`CLUSTER_WINDOW_S` of the receiver's clock;
- **read**: everything else (the query API, the escalation state, the ack API, unknown
  paths): ``Authorization: Bearer <token>`` of a reader in ``GOVCLOCK_READERS_FILE``
  (config/readers.py). Without a readers file: open on loopback (the development set-up),
  refused with 403 off it.

:func:`decide` is pure; :func:`access_middleware` applies it to aiohttp requests, and
:func:`install_access` puts the middleware into Faust's aiohttp application before the web
server starts. :func:`check_start` refuses settings that would start open off loopback.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware
from yarl import URL

from config.readers import Readers, load_readers
from config.settings import Settings, SettingsError

if TYPE_CHECKING:
    import faust

    from worker.context import Context

__all__ = [
    "CLUSTER_HEADER",
    "CLUSTER_WINDOW_S",
    "OPEN_PATHS",
    "READER_KEY",
    "AccessPolicy",
    "ClusterKey",
    "Decision",
    "PeerAuth",
    "RequestFacts",
    "access_middleware",
    "aiohttp_application",
    "bearer_token",
    "build_policy",
    "check_start",
    "classify",
    "decide",
    "install_access",
    "is_loopback",
    "loggable_path",
    "start_notes",
    "start_problems",
]

log = logging.getLogger("govclock.access")

CLUSTER_HEADER = "X-Govclock-Cluster"
#: How far (either way) a peer call's timestamp may be from the receiver's clock, seconds.
CLUSTER_WINDOW_S = 60
#: Routes that answer anyone (probes, the scrape).
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})
INTERNAL_PREFIX = "/v1/internal/"
#: Key of the request's reader name (for views that want it).
READER_KEY = web.RequestKey("govclock_reader", str)
#: Prefix of the acknowledgement-link route; the rest of such a path is a secret token.
_ACK_PREFIX = "/a/"

Kind = Literal["open", "public", "internal", "read"]
PublicPaths = tuple[tuple[str, bool], ...]

_CLUSTER_VALUE = re.compile(r"^(?P<ts>[0-9]{1,12}):(?P<mac>[0-9a-f]{64})$")
_GENERATE_HINT = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def is_loopback(host: str) -> bool:
    """``localhost``, 127.0.0.0/8 or ::1 (brackets allowed); anything else is not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


# -- the cluster credential -------------------------------------------------------------


@dataclass(frozen=True)
class ClusterKey:
    """The keys peer calls are signed (first) and checked (all) with. ``generated``: a
    random key of this process alone (one worker; nobody outside can call its internals)."""

    keys: tuple[bytes, ...]
    generated: bool = False

    @classmethod
    def random(cls) -> ClusterKey:
        return cls((secrets.token_bytes(32),), generated=True)

    def sign(self, method: str, path_qs: str, now: float) -> str:
        """The ``X-Govclock-Cluster`` value for a request to ``path_qs`` sent at ``now``."""
        ts = str(int(now))
        return f"{ts}:{_cluster_mac(self.keys[0], method, path_qs, ts)}"

    def verify(self, value: str, method: str, path_qs: str, now: float) -> str | None:
        """None when ``value`` is good for this request now, else why not (safe to send)."""
        m = _CLUSTER_VALUE.match(value.strip())
        if m is None:
            return f"malformed {CLUSTER_HEADER} (expected <unix seconds>:<hex HMAC-SHA256>)"
        skew = int(now) - int(m["ts"])
        if abs(skew) > CLUSTER_WINDOW_S:
            return (
                f"{CLUSTER_HEADER} is {abs(skew)} s off this worker's clock (window "
                f"±{CLUSTER_WINDOW_S} s: check the workers' clocks)"
            )
        good = False
        for key in self.keys:
            expected = _cluster_mac(key, method, path_qs, m["ts"])
            good |= hmac.compare_digest(expected.encode(), m["mac"].encode())
        return None if good else f"{CLUSTER_HEADER} does not match (another cluster secret?)"


def _cluster_mac(key: bytes, method: str, path_qs: str, ts: str) -> str:
    message = f"{method.upper()}\n{path_qs}\n{ts}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class PeerAuth:
    """What a worker adds to its calls to other workers (nothing without a cluster key)."""

    cluster: ClusterKey | None
    clock: Callable[[], float] = time.time

    def headers(self, method: str, url: URL) -> dict[str, str]:
        if self.cluster is None:
            return {}
        return {CLUSTER_HEADER: self.cluster.sign(method, url.raw_path_qs, self.clock())}


# -- the policy and the decision ----------------------------------------------------------


@dataclass(frozen=True)
class AccessPolicy:
    """``readers`` None: no readers file, the read routes are open if ``reads_open`` (on
    loopback) else refused. ``cluster`` None: peer calls are not checked (loopback, nothing
    configured)."""

    readers: Readers | None
    reads_open: bool
    cluster: ClusterKey | None
    public_paths: PublicPaths
    forwarded_header: str


@dataclass(frozen=True)
class Decision:
    allowed: bool
    kind: Kind
    status: int = 200
    error: str = ""
    reader: str | None = None
    log_level: int = logging.DEBUG


def classify(route: str, public_paths: PublicPaths) -> Kind:
    """The class of a route pattern (or, for a request that matched none, its path)."""
    if route in OPEN_PATHS:
        return "open"
    if route.startswith(INTERNAL_PREFIX):
        return "internal"
    if any(route == p if exact else route.startswith(p) for p, exact in public_paths):
        return "public"
    return "read"


def bearer_token(header: str | None) -> str | None:
    """The token of ``Authorization: Bearer <token>`` (scheme in any case), else None."""
    if not header:
        return None
    scheme, _, token = header.strip().partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _refused(kind: Kind, status: int, error: str, level: int) -> Decision:
    return Decision(False, kind, status, error, log_level=level)


def _internal(policy: AccessPolicy, request: RequestFacts) -> Decision:
    if policy.cluster is None:  # loopback with nothing configured: as before
        return Decision(True, "internal")
    value = request.headers.get(CLUSTER_HEADER)
    if not value:
        error = f"a call between workers needs {CLUSTER_HEADER} (GOVCLOCK_CLUSTER_SECRET)"
        return _refused("internal", 401, error, logging.WARNING)
    reason = policy.cluster.verify(value, request.method, request.path_qs, request.now)
    if reason is not None:
        return _refused("internal", 401, reason, logging.WARNING)
    return Decision(True, "internal")


def _read(policy: AccessPolicy, request: RequestFacts) -> Decision:
    if policy.readers is None:
        if policy.reads_open:
            return Decision(True, "read")
        error = (
            "the read routes are closed off loopback: configure readers with "
            "GOVCLOCK_READERS_FILE (docs/security.md)"
        )
        return _refused("read", 403, error, logging.INFO)
    token = bearer_token(request.headers.get("Authorization"))
    if token is None:
        error = "missing Authorization: Bearer <token> (a reader's API token)"
        return _refused("read", 401, error, logging.INFO)
    reader = policy.readers.identify(token)
    if reader is None:
        return _refused("read", 401, "unknown API token", logging.WARNING)
    level = logging.DEBUG if request.method in ("GET", "HEAD") else logging.INFO
    return Decision(True, "read", reader=reader.name, log_level=level)


@dataclass(frozen=True)
class RequestFacts:
    """What :func:`decide` looks at: the matched route (or path), the raw path and query
    as sent (what a peer signs), the method, the headers and the time."""

    method: str
    route: str
    path_qs: str
    headers: Mapping[str, str]
    now: float


def decide(policy: AccessPolicy, request: RequestFacts) -> Decision:
    """May ``request`` go on? A forwarded request (any route) or an internal route needs
    the cluster credential; open and public routes pass; the rest needs a reader."""
    kind = classify(request.route, policy.public_paths)
    if policy.forwarded_header in request.headers or kind == "internal":
        return _internal(policy, request)
    if kind in ("open", "public"):
        return Decision(True, kind)
    return _read(policy, request)


# -- settings: what is refused, and what the worker says at start ------------------------


def _needs_cluster_key(settings: Settings) -> bool:
    """Off loopback, or with readers to protect, peer calls must prove who they are (a
    forwarded request skips the reader check)."""
    return not is_loopback(settings.web_host) or settings.readers_file is not None


def start_problems(settings: Settings) -> list[str]:
    """Why ``govclock run`` must not start with ``settings`` (one line each; no secret)."""
    host = settings.web_host
    problems = []
    if not is_loopback(host) and settings.sources_file is None and not settings.allow_unsigned:
        problems.append(
            f"GOVCLOCK_SOURCES_FILE: required when GOVCLOCK_WEB_HOST ({host}) is not a "
            "loopback address (anyone reaching the port could post events); set it "
            "(docs/integrations.md) or accept unsigned events explicitly with "
            "GOVCLOCK_ALLOW_UNSIGNED=true"
        )
    if not settings.embedded and settings.cluster_secret is None and _needs_cluster_key(settings):
        why = (
            f"GOVCLOCK_WEB_HOST ({host}) is not a loopback address"
            if not is_loopback(host)
            else "GOVCLOCK_READERS_FILE is set"
        )
        problems.append(
            f"GOVCLOCK_CLUSTER_SECRET: required with KAFKA_BROKER when {why}: the workers "
            "sign their calls to one another with it, the same value on each, e.g. from "
            + _GENERATE_HINT
        )
    return problems


def check_start(settings: Settings) -> None:
    """Raise :class:`SettingsError` (one line per problem) for a start that would be open
    off loopback; a readers file that does not parse raises its ReadersError."""
    problems = start_problems(settings)
    if len(problems) == 1:
        raise SettingsError(f"invalid settings: {problems[0]}")
    if problems:
        raise SettingsError("invalid settings:\n  " + "\n  ".join(problems))
    if settings.readers_file is not None:
        load_readers(settings.readers_file)


def _cluster_key(settings: Settings) -> ClusterKey | None:
    if settings.cluster_secret is not None:
        return ClusterKey(tuple(s.encode() for s in settings.cluster_secrets))
    if not _needs_cluster_key(settings):
        return None
    if not settings.embedded:  # several workers: each needs the same secret
        raise SettingsError(f"invalid settings: {start_problems(settings)[-1]}")
    return ClusterKey.random()  # one worker: no peer, so nobody needs to know it


def build_policy(
    settings: Settings, public_paths: PublicPaths, forwarded_header: str
) -> AccessPolicy:
    """The worker's policy from its settings (loads the readers file)."""
    readers = None if settings.readers_file is None else load_readers(settings.readers_file)
    return AccessPolicy(
        readers=readers,
        reads_open=is_loopback(settings.web_host),
        cluster=_cluster_key(settings),
        public_paths=public_paths,
        forwarded_header=forwarded_header,
    )


def _intake_note(settings: Settings) -> tuple[int, str]:
    where = f"{settings.web_host}:{settings.web_port}"
    if settings.sources_file is not None:
        if settings.allow_unsigned:
            return logging.INFO, (
                "GOVCLOCK_ALLOW_UNSIGNED has no effect: a sources file is set, so every "
                "event must be signed"
            )
        return logging.INFO, "events: signed by the sources of GOVCLOCK_SOURCES_FILE"
    if is_loopback(settings.web_host):
        return logging.WARNING, (
            f"no sources file: unsigned events are accepted on {where} (loopback only)"
        )
    return logging.WARNING, (
        f"GOVCLOCK_ALLOW_UNSIGNED=true: unsigned events are accepted from anyone who "
        f"reaches {where} (no GOVCLOCK_SOURCES_FILE)"
    )


def _reads_note(policy: AccessPolicy) -> tuple[int, str]:
    if policy.readers is not None:
        names = ", ".join(policy.readers.names)
        return logging.INFO, f"read routes: a reader's token needed (readers: {names})"
    if policy.reads_open:
        return logging.WARNING, (
            "read routes open to anyone on loopback (no GOVCLOCK_READERS_FILE; development)"
        )
    return logging.WARNING, (
        "read routes closed (403): no GOVCLOCK_READERS_FILE and not on loopback"
    )


def _cluster_note(policy: AccessPolicy) -> tuple[int, str]:
    if policy.cluster is None:
        return logging.INFO, "calls between workers unchecked (loopback, no cluster secret)"
    if policy.cluster.generated:
        return logging.INFO, (
            "internal routes closed to callers: one worker (embedded broker), a random "
            "cluster key of this process"
        )
    return logging.INFO, "calls between workers signed with GOVCLOCK_CLUSTER_SECRET"


def start_notes(settings: Settings, policy: AccessPolicy) -> list[tuple[int, str]]:
    """``(level, message)`` the worker logs at every start: how it is reachable."""
    return [_intake_note(settings), _reads_note(policy), _cluster_note(policy)]


# -- aiohttp ------------------------------------------------------------------------------


def loggable_path(path: str) -> str:
    """``path`` for a log line: an acknowledgement link's token hidden, control characters
    escaped, at most 200 characters."""
    if path.startswith(_ACK_PREFIX):
        path = _ACK_PREFIX + "…"
    shown = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in path)
    return shown if len(shown) <= 200 else shown[:200] + "…"


def _route_of(request: web.Request) -> str:
    match = request.match_info
    resource = None if match.http_exception is not None else match.route.resource
    return resource.canonical if resource is not None else request.path


def _facts(request: web.Request, now: float) -> RequestFacts:
    return RequestFacts(request.method, _route_of(request), request.raw_path, request.headers, now)


def _log_decision(request: web.Request, decision: Decision) -> None:
    if not log.isEnabledFor(decision.log_level):
        return
    what = f"{request.method} {loggable_path(request.path)} from {request.remote}"
    if decision.allowed:
        who = f"reader {decision.reader}" if decision.reader else decision.kind
        log.log(decision.log_level, "access: %s: %s", what, who)
    else:
        log.log(
            decision.log_level, "access: %s refused (%d): %s", what, decision.status, decision.error
        )


def access_middleware(policy: AccessPolicy, clock: Callable[[], float] = time.time) -> Middleware:
    """An aiohttp middleware enforcing ``policy``: refusals are JSON ``{"error": …}``."""

    @web.middleware
    async def govclock_access(request: web.Request, handler: Handler) -> web.StreamResponse:
        decision = decide(policy, _facts(request, clock()))
        _log_decision(request, decision)
        if not decision.allowed:
            headers = {"WWW-Authenticate": 'Bearer realm="govclock"'}
            if decision.kind == "internal" or decision.status != 401:
                headers = {}
            return web.json_response(
                {"error": decision.error}, status=decision.status, headers=headers
            )
        if decision.reader is not None:
            request[READER_KEY] = decision.reader
        return await handler(request)

    return govclock_access


def aiohttp_application(app: faust.App) -> web.Application:
    """Faust's aiohttp application (``app.web.web_app``), not yet frozen."""
    from faust.web.drivers.aiohttp import Web as AiohttpWeb

    driver = app.web
    if not isinstance(driver, AiohttpWeb):
        raise RuntimeError(f"govclock needs Faust's aiohttp web driver, not {driver!r}")
    application: web.Application = driver.web_app
    return application


def install_access(ctx: Context, public_paths: PublicPaths, forwarded_header: str) -> PeerAuth:
    """Put the access middleware into the worker's web application (before the server
    starts: the application freezes then), log the access set-up once the server starts
    (at every start), and return what the worker adds to its own calls to peers."""
    policy = build_policy(ctx.settings, public_paths, forwarded_header)
    application = aiohttp_application(ctx.app)
    application.middlewares.append(access_middleware(policy))
    notes = start_notes(ctx.settings, policy)

    async def say_how_reachable(_: web.Application) -> None:
        for level, text in notes:
            log.log(level, "govclock: %s", text)

    application.on_startup.append(say_how_reachable)
    return PeerAuth(policy.cluster)
