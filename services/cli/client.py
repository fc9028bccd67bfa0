"""The HTTP calls of the command-line client, with short timeouts and errors that say what to do.

CliError
├── Unreachable   the service did not answer (names the URL and how to start the stack)
└── ApiFailure    the service answered with an error body (status, code, message)
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from services.core.views import CancelAccepted, ChatAccepted, ResponseView

__all__ = ["CliError", "Unreachable", "ApiFailure", "RelayClient", "TIMEOUT", "failure_from"]

#: Every request of the client finishes (or fails) well inside 10 s; answers are followed by polling.
TIMEOUT = httpx.Timeout(5.0, connect=3.0)

_HOW_TO_START = {
    "ingress": "RELAY_INGRESS_URL",
    "status": "RELAY_STATUS_URL",
    "retriever": "RELAY_RETRIEVER_URL",
}


class CliError(Exception):
    exit_code = 1


class Unreachable(CliError):
    exit_code = 3

    def __init__(self, service: str, url: str, exc: Exception) -> None:
        reason = "connection refused" if isinstance(exc, httpx.ConnectError) else _reason(exc)
        super().__init__(
            f"cannot reach the {service} service at {url} ({reason}). Start the local stack with `relay up`, "
            f"or set {_HOW_TO_START.get(service, 'the URL')} to where it runs."
        )
        self.service, self.url = service, url


class ApiFailure(CliError):
    def __init__(self, service: str, status: int, code: str, message: str) -> None:
        super().__init__(f"the {service} service refused the request ({status} {code}): {message}")
        self.status, self.code, self.message = status, code, message
        self.exit_code = 2 if 400 <= status < 500 and status not in (404, 409) else 1


def _reason(exc: Exception) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "no answer in time"
    return str(exc) or type(exc).__name__


def failure_from(service: str, r: httpx.Response) -> ApiFailure:
    try:
        error = r.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        code, message = "http_error", r.text[:300] or r.reason_phrase
    return ApiFailure(service, r.status_code, code, message)


@dataclass
class RelayClient:
    ingress_url: str
    status_url: str
    user_id: str | None = None
    submit_retries: int = 3

    def __post_init__(self) -> None:
        headers = {"X-User-Id": self.user_id} if self.user_id else {}
        self.http = httpx.Client(timeout=TIMEOUT, headers=headers)

    def close(self) -> None:
        self.http.close()

    def _call(self, service: str, base: str, method: str, path: str, **kwargs: Any) -> httpx.Response:
        url = base.rstrip("/") + path
        try:
            return self.http.request(method, url, **kwargs)
        except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
            raise Unreachable(service, base, exc) from exc

    def submit(self, message: str, *, conversation_id: str | None, model: str | None) -> ChatAccepted:
        """POST /api/chat; a 503 or a lost answer is retried with the same Idempotency-Key (never doubled)."""
        body: dict[str, Any] = {"message": message}
        if conversation_id:
            body["conversation_id"] = conversation_id
        if model:
            body["model"] = model
        headers = {"Idempotency-Key": f"cli-{uuid.uuid4()}"}
        for attempt in range(self.submit_retries + 1):
            try:
                r = self._call("ingress", self.ingress_url, "POST", "/api/chat", json=body, headers=headers)
            except httpx.TransportError as exc:  # sent, but the answer was lost: the key makes a retry safe
                if attempt == self.submit_retries:
                    raise Unreachable("ingress", self.ingress_url, exc) from exc
                time.sleep(1.0)
                continue
            if r.status_code == 503 and attempt < self.submit_retries:
                time.sleep(min(float(r.headers.get("retry-after", "1") or 1), 5.0))
                continue
            if r.status_code != 202:
                raise failure_from("ingress", r)
            return ChatAccepted.model_validate(r.json())
        raise AssertionError("unreachable")  # pragma: no cover

    def poll(self, response_id: str, *, since: int, attempt: int | None) -> ResponseView:
        params: dict[str, int] = {"since": since}
        if attempt is not None:
            params["attempt"] = attempt
        r = self._call("status", self.status_url, "GET", f"/api/response/{response_id}", params=params)
        if r.status_code != 200:
            raise failure_from("status", r)
        return ResponseView.model_validate(r.json())

    def cancel(self, response_id: str) -> CancelAccepted:
        r = self._call("ingress", self.ingress_url, "POST", f"/api/response/{response_id}/cancel")
        if r.status_code != 202:
            raise failure_from("ingress", r)
        return CancelAccepted.model_validate(r.json())
