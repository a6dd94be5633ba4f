"""``GET /metrics`` (Prometheus), ``GET /healthz`` (alive) and ``GET /readyz`` (caught up)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from faust.web import Request, Response, View
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

if TYPE_CHECKING:
    from worker.context import Context


def register(ctx: Context) -> None:
    @ctx.app.page("/metrics")
    class MetricsView(View):
        async def get(self, request: Request) -> Response:
            body = generate_latest(ctx.metrics.registry)
            return self.bytes(body, content_type=CONTENT_TYPE_LATEST.split(";")[0])

    @ctx.app.page("/healthz")
    class Health(View):
        async def get(self, request: Request) -> Response:
            return self.json({"ok": True, "uptime_s": round(time.time() - ctx.started_at, 1)})

    @ctx.app.page("/readyz")
    class Ready(View):
        async def get(self, request: Request) -> Response:
            ready = ctx.caught_up()
            body = {
                "ready": ready,
                "partitions": ctx.assigned(),
                "backlog": ctx.backlog,
                "stats": ctx.stats,
            }
            return self.json(body, status=200 if ready else 503)
