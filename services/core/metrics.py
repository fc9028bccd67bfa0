"""Prometheus metrics every service exposes on /metrics, and the HTTP instrumentation for FastAPI."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from prometheus_client import CONTENT_TYPE_LATEST, Counter, Gauge, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Match

__all__ = [
    "HTTP_REQUESTS",
    "HTTP_LATENCY",
    "EVENTS_PUBLISHED",
    "EVENTS_CONSUMED",
    "MODEL_TTFT",
    "USER_TTFT",
    "TOTAL_TIME",
    "FAILURES",
    "IN_FLIGHT",
    "instrument_http",
    "metrics_response",
]

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_ANSWER_BUCKETS = (0.1, 0.25, 0.5, 1, 2, 5, 10, 20, 30, 60, 120, 180, 300, 600)

HTTP_REQUESTS = Counter("relay_http_requests_total", "HTTP requests served", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "relay_http_request_seconds", "HTTP request latency", ["method", "route"], buckets=_LATENCY_BUCKETS
)
EVENTS_PUBLISHED = Counter("relay_events_published_total", "Events published to JetStream", ["subject"])
EVENTS_CONSUMED = Counter("relay_events_consumed_total", "Messages fetched from JetStream", ["subject", "consumer"])
MODEL_TTFT = Histogram("relay_model_ttft_seconds", "Provider call to first content token", buckets=_ANSWER_BUCKETS)
USER_TTFT = Histogram(
    "relay_user_ttft_seconds",
    "Question accepted to first token stored (what a poller can see)",
    buckets=_ANSWER_BUCKETS,
)
TOTAL_TIME = Histogram("relay_answer_total_seconds", "Provider call to last token", buckets=_ANSWER_BUCKETS)
FAILURES = Counter("relay_failures_total", "Answers that ended failed, by cause", ["cause"])
IN_FLIGHT = Gauge("relay_answers_in_flight", "Answers this process is working on")


def _route_of(request: Request) -> str:
    for route in request.app.router.routes:
        match, _ = route.matches(request.scope)
        if match == Match.FULL:
            return getattr(route, "path", "unknown")
    return "unmatched"


async def instrument_http(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
    """FastAPI ``@app.middleware("http")``: count and time each request by route template, not by URL."""
    route = _route_of(request)
    start = time.perf_counter()
    status = 500
    try:
        response = await call_next(request)
        status = response.status_code
        return response
    finally:
        # Recent FastAPI keeps an included router as one lazy entry: the template is known only after routing.
        route = getattr(request.scope.get("route"), "path", None) or route
        HTTP_LATENCY.labels(request.method, route).observe(time.perf_counter() - start)
        HTTP_REQUESTS.labels(request.method, route, str(status)).inc()


def metrics_response() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
