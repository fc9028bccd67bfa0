"""The settings every service shares; each service extends this with its own prefix."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["BaseServiceSettings"]


class BaseServiceSettings(BaseSettings):
    """NATS, identity, logging. Read from the environment (and a local ``.env`` file)."""

    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    nats_url: str = Field(default="nats://127.0.0.1:4322", validation_alias="NATS_URL")
    service_name: str = Field(default="relay", validation_alias="SERVICE_NAME")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_json: bool | None = Field(default=None, validation_alias="LOG_JSON")  # None: JSON when not a terminal
    stream_max_age_s: float = Field(default=7 * 24 * 3600, validation_alias="RELAY_STREAM_MAX_AGE_S")
    duplicate_window_s: float = Field(default=120.0, validation_alias="RELAY_DUPLICATE_WINDOW_S")
    update_consumers_on_drift: bool = Field(default=True, validation_alias="RELAY_UPDATE_CONSUMERS_ON_DRIFT")
