"""A small synchronous client for the relay HTTP API, as the chat page uses it.

Every call is short (``timeout``); nothing here waits for the model. Errors::

    ApiError
    ├── Unreachable   connection refused, timed out, 5xx: try again later (the page backs off)
    ├── Refused       the API said no (4xx) with a code and a message a person can read
    │   └── NotFound  404: unknown id, or another user's
    └── BadAnswer     the API answered something this page cannot read (contract drift)
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel, TypeAdapter, ValidationError

from services.core.views import (
    CancelAccepted,
    ChatAccepted,
    ChatRequest,
    ConversationSummary,
    ConversationView,
    FinalView,
    ResponseView,
)

__all__ = ["ApiError", "Unreachable", "Refused", "NotFound", "BadAnswer", "RelayClient"]

_SUMMARIES = TypeAdapter(list[ConversationSummary])
_M = TypeVar("_M", bound=BaseModel)


class ApiError(Exception):
    """Anything that kept a call from giving its answer."""


class Unreachable(ApiError):
    """The service did not answer (down, restarting, network gone, 5xx)."""


class Refused(ApiError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status, self.code, self.message = status, code, message


class NotFound(Refused):
    """Unknown id — or one that belongs to another user (the API does not say which)."""


class BadAnswer(ApiError):
    """The body did not match ``services.core.views``."""


def _error_of(resp: httpx.Response) -> tuple[str, str]:
    try:
        err = resp.json().get("error") or {}
        return str(err.get("code") or "http_error"), str(err.get("message") or resp.reason_phrase)
    except Exception:  # noqa: BLE001 — not JSON: say what we got
        return "http_error", resp.text[:200] or resp.reason_phrase


class RelayClient:
    """``RelayClient(ingress_url, status_url)``; the user id goes with each call (one client serves every session)."""

    def __init__(
        self, ingress_url: str, status_url: str, *, timeout: float = 3.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self.ingress_url = ingress_url.rstrip("/")
        self.status_url = status_url.rstrip("/")
        self._http = httpx.Client(
            timeout=httpx.Timeout(timeout), transport=transport, headers={"Accept": "application/json"}
        )

    def close(self) -> None:
        self._http.close()

    # --- ingress -------------------------------------------------------------------------------

    def ask(
        self,
        user_id: str,
        message: str,
        *,
        conversation_id: uuid.UUID | None = None,
        idempotency_key: str | None = None,
        model: str | None = None,
    ) -> ChatAccepted:
        body = ChatRequest(message=message, conversation_id=conversation_id, model=model)
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        data = self._call(
            "POST",
            f"{self.ingress_url}/api/chat",
            user_id,
            json=body.model_dump(mode="json", exclude_none=True),
            headers=headers,
        )
        return self._parse(ChatAccepted, data)

    def cancel(self, user_id: str, response_id: uuid.UUID) -> CancelAccepted:
        data = self._call("POST", f"{self.ingress_url}/api/response/{response_id}/cancel", user_id)
        return self._parse(CancelAccepted, data)

    # --- status --------------------------------------------------------------------------------

    def poll(self, user_id: str, response_id: uuid.UUID, *, since: int = 0, attempt: int | None = None) -> ResponseView:
        params: dict[str, int] = {"since": since}
        if attempt is not None:
            params["attempt"] = attempt
        data = self._call("GET", f"{self.status_url}/api/response/{response_id}", user_id, params=params)
        return self._parse(ResponseView, data)

    def final(self, user_id: str, response_id: uuid.UUID) -> FinalView | ResponseView:
        """The final answer once terminal; the running state (202) before."""
        resp = self._send("GET", f"{self.status_url}/api/response/{response_id}/final", user_id)
        if resp.status_code == 202:
            return self._parse(ResponseView, resp.json())
        return self._parse(FinalView, self._json_or_raise(resp))

    def conversation(self, user_id: str, conversation_id: uuid.UUID) -> ConversationView:
        data = self._call("GET", f"{self.status_url}/api/conversation/{conversation_id}", user_id)
        return self._parse(ConversationView, data)

    def conversations(self, user_id: str, *, limit: int = 30) -> list[ConversationSummary]:
        """Most recent first. Accepts a bare list or ``{"conversations": [...]}``."""
        data = self._call("GET", f"{self.status_url}/api/conversations", user_id, params={"limit": limit})
        items = data.get("conversations", []) if isinstance(data, dict) else data
        try:
            return _SUMMARIES.validate_python(items)
        except ValidationError as exc:
            raise BadAnswer(f"conversation list: {exc}") from exc

    # --- plumbing ------------------------------------------------------------------------------

    def _send(self, method: str, url: str, user_id: str, **kwargs: Any) -> httpx.Response:
        headers = {"X-User-Id": user_id, **kwargs.pop("headers", {})}
        try:
            return self._http.request(method, url, headers=headers, **kwargs)
        except httpx.HTTPError as exc:  # connect refused, reset, timeout
            raise Unreachable(f"{type(exc).__name__}: {exc}") from exc

    def _call(self, method: str, url: str, user_id: str, **kwargs: Any) -> Any:
        return self._json_or_raise(self._send(method, url, user_id, **kwargs))

    @staticmethod
    def _json_or_raise(resp: httpx.Response) -> Any:
        if resp.status_code >= 500:
            code, message = _error_of(resp)
            raise Unreachable(f"{resp.status_code} {code}: {message}")
        if resp.status_code >= 400:
            code, message = _error_of(resp)
            raise (NotFound if resp.status_code == 404 else Refused)(resp.status_code, code, message)
        try:
            return resp.json()
        except ValueError as exc:
            raise BadAnswer(f"not JSON: {resp.text[:200]}") from exc

    @staticmethod
    def _parse(model: type[_M], data: Any) -> _M:
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            raise BadAnswer(f"{model.__name__}: {exc}") from exc
