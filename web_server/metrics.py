"""Prometheus metrics of the web server: requests by route template and status, and latency.

Names and labels follow OpenTelemetry's HTTP server conventions as Prometheus spells them, so
dashboards made for them work: `http_server_request_duration_seconds{http_request_method,
http_route, http_response_status_code}` (a histogram: its _count is the request count) and
`http_server_active_requests`. `http_route` is the route's template (`/api/items/{key:path}`),
never the raw path: a caller cannot grow the label set by asking for new paths. Paths no route
matches share `unmatched`; methods outside the usual ones share `_OTHER`. Requests refused
before a route ran (no API key, a wrong Host) are counted under the route they asked for.
A request whose client left before any answer is counted with status 499 (nginx's "client
closed request").
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Gauge, Histogram
from starlette.routing import BaseRoute, Match, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from imagesim.serving.metrics import LATENCY_BUCKETS

METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
CLIENT_CLOSED = 499


def route_template(route: BaseRoute) -> str:
    return str(getattr(route, "path", UNMATCHED)) or UNMATCHED


def flatten(routes: Iterable[BaseRoute]) -> list[BaseRoute]:
    """The routes a request is matched against. An included router stands for its routes:
    FastAPI (0.16x) keeps an included router as one route of its own, without a path, that
    matches whatever its routes match (imagesim.web includes its routers without a prefix,
    so their routes' paths are the full paths)."""
    flat: list[BaseRoute] = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        if isinstance(inner, Router):
            flat.extend(flatten(inner.routes))
        else:
            flat.append(route)
    return flat


def route_of(scope: Scope, routes: Iterable[BaseRoute]) -> str:
    """The template of the route that handled (or would handle) the request."""
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        return route_template(route)
    partial = None
    for candidate in routes:
        match, _ = candidate.matches(scope)
        if match is Match.FULL:
            return route_template(candidate)
        if match is Match.PARTIAL and partial is None:
            partial = candidate
    return route_template(partial) if partial is not None else UNMATCHED


class HttpMetrics:
    """ASGI middleware, the outermost: every request is counted, refused ones too."""

    def __init__(self, app: ASGIApp, registry: CollectorRegistry, router: Router) -> None:
        self.app = app
        self.router = router
        self._routes: list[BaseRoute] | None = None  # flattened at the first request
        self.duration = Histogram(
            "http_server_request_duration_seconds",
            "Duration of HTTP server requests.",
            ("http_request_method", "http_route", "http_response_status_code"),
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.active = Gauge(
            "http_server_active_requests", "HTTP requests being handled now.", registry=registry
        )

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 0

        async def counted(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        # The route is found before the request runs: a mounted app (the static files) rewrites
        # the scope's root_path, after which no route would match it.
        if self._routes is None:
            self._routes = flatten(self.router.routes)
        route = route_of(scope, self._routes)
        self.active.inc()
        try:
            await self.app(scope, receive, counted)
        except BaseException:
            status = status or 500
            raise
        finally:
            self.active.dec()
            method = scope["method"] if scope["method"] in METHODS else "_OTHER"
            self.duration.labels(method, route, str(status or CLIENT_CLOSED)).observe(
                time.perf_counter() - start
            )
