"""Every HTTP route of a worker, registered by the module of its concern.

- web/ingest.py: ``POST /v1/events``, ``POST /v1/hooks/{source}`` (events in);
- web/obligations.py: ``GET /v1/obligations``, ``GET /v1/obligations/{id}`` (the cluster's
  obligations; docs/broker.md, "Queries on several workers");
- web/acks.py: ``POST /v1/obligations/{id}/ack``, ``GET /v1/obligations/{id}/escalation``;
- web/twilio.py: ``POST /v1/channels/twilio/status`` and ``/inbound`` (Twilio's signed
  webhooks), ``POST /v1/internal/reply-candidates`` (one worker asking another);
- web/ack_links.py: ``GET``/``POST /a/{token}``, the page behind the link in every SMS;
- web/health.py: ``GET /metrics``, ``/healthz``, ``/readyz``.

Who may call what is decided before any route runs, by web/access.py (docs/security.md).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from escalation.links import ACK_PATH
from web import ack_links, acks, health, ingest, obligations, twilio
from web.access import install_access
from web.peers import FORWARDED_HEADER, Peers

if TYPE_CHECKING:
    from worker.context import Context

#: The paths a public proxy may expose (deploy/k8s/ingress.yaml), as ``(path, exact)``: each
#: checks its caller itself (HMAC or Ghost signatures, signed links, Twilio's signature). The
#: others (the query API, escalation state, /metrics, /v1/internal/) are for readers with a
#: token and for the other workers (web/access.py).
PUBLIC_PATHS: tuple[tuple[str, bool], ...] = (
    ("/v1/events", True),
    ("/v1/hooks/", False),
    (ACK_PATH, False),
    ("/v1/channels/twilio/", False),
)


def register(ctx: Context) -> None:
    """Install the access checks, then every route."""
    peers = Peers(ctx, install_access(ctx, PUBLIC_PATHS, FORWARDED_HEADER))
    found = obligations.Obligations(ctx, peers)
    ingest.register(ctx)
    obligations.register(ctx, found)
    acks.register(ctx, peers)
    twilio.register(ctx, peers)
    ack_links.register(ctx, peers, found)
    health.register(ctx)
