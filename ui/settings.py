"""The chat page's settings: where the API is, who the user is, how fast to poll.

Environment: ``RELAY_INGRESS_URL``, ``RELAY_STATUS_URL`` (shared with the CLI) and ``UI_*``.

Who the user is: ``UI_USER_ID`` when set (one identity for every browser — a single-user install, or
a deployment that puts one user behind each UI). Otherwise every browser gets its own id, generated
on the first visit and kept in the page URL (``?u=<id>``) next to the conversation (``?c=<id>``), so
a reload or a bookmark finds the same conversations. Real authentication comes later; the id only
scopes what the status service shows.
"""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["UiSettings"]


class UiSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="UI_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    ingress_url: str = Field(default="http://127.0.0.1:8701", validation_alias="RELAY_INGRESS_URL")
    status_url: str = Field(default="http://127.0.0.1:8702", validation_alias="RELAY_STATUS_URL")
    user_id: str | None = Field(
        default=None, description="One fixed user for every browser; unset: a per-browser id in ?u=."
    )
    model: str | None = Field(default=None, description="Ask for this model; unset: the server's default.")
    title: str = "llm-relay"
    request_timeout_s: float = Field(
        default=3.0, gt=0, description="Every API call is short; longer means unreachable."
    )
    tick_s: float = Field(
        default=0.25,
        gt=0,
        description="How often the live answer wakes up; it polls when the server's poll_after_ms says so.",
    )
    backoff_base_s: float = Field(default=0.5, gt=0, description="First wait after a failed poll; doubles per failure.")
    backoff_max_s: float = Field(default=4.0, gt=0, description="Longest wait between reconnect attempts.")
    conversations_limit: int = Field(default=30, ge=1, le=200)
    max_chars: int = Field(
        default=8000, ge=1, description="Longest question the input takes (ingress's INGRESS_MAX_MESSAGE_CHARS)."
    )
