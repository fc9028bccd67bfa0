"""Where the command-line client finds the services: ``RELAY_*`` variables (or a local ``.env``)."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["CliSettings"]


class CliSettings(BaseSettings):
    """Not a service, so not ``BaseServiceSettings``: only the URLs and the caller's identity."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    ingress_url: str = Field(default="http://127.0.0.1:8701", validation_alias="RELAY_INGRESS_URL")
    status_url: str = Field(default="http://127.0.0.1:8702", validation_alias="RELAY_STATUS_URL")
    retriever_url: str = Field(default="http://127.0.0.1:8703", validation_alias="RELAY_RETRIEVER_URL")
    user_id: str | None = Field(default=None, validation_alias="RELAY_USER_ID")
    #: Embedding a document is real CPU work: this one request may take longer than the others (≤ 5 s).
    ingest_timeout_s: float = Field(default=60.0, gt=0, validation_alias="RELAY_INGEST_TIMEOUT_S")
    #: How long ``follow`` keeps retrying an unreachable status service before giving up.
    reconnect_for_s: float = Field(default=120.0, gt=0, validation_alias="RELAY_RECONNECT_FOR_S")
