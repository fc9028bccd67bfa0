"""The status service's settings (``STATUS_*`` plus ``DATABASE_URL``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.core.settings import BaseServiceSettings
from services.status.postgres_migrations import MIGRATIONS_DIR

__all__ = ["StatusSettings"]


class StatusSettings(BaseServiceSettings):
    """Folds every event into PostgreSQL and serves the polling API."""

    model_config = SettingsConfigDict(env_prefix="STATUS_")

    service_name: str = Field(default="status", validation_alias="SERVICE_NAME")
    host: str = "127.0.0.1"
    port: int = 8702
    database_url: str = Field(default="postgresql://postgres@127.0.0.1:5532/relay", validation_alias="DATABASE_URL")
    db_wait_s: float = Field(default=60.0, gt=0, description="How long start-up waits for PostgreSQL.")
    db_timeout_s: float = Field(
        default=0.8, gt=0, description="Longest wait for a pooled connection (polls answer 503 after it)."
    )
    pool_size: int = Field(default=10, ge=2)
    migrations_dir: Path = MIGRATIONS_DIR
    consume: bool = Field(default=True, description="Fold events here; false for API-only (read) replicas.")
    flush_tick_ms: int = Field(default=50, ge=1, le=1000, description="One transaction per tick serves every answer.")
    batch_size: int = Field(default=500, ge=1, le=10000)
    ack_wait_s: float = Field(default=30.0, gt=0)
    gap_nak_delay_s: float = Field(
        default=0.2, gt=0, description="First redelivery delay of an event folded too early."
    )
    gap_max_deliveries: int = Field(
        default=200, ge=2, description="Then the event is terminated (the sweeper ends the answer)."
    )
    db_down_nak_delay_s: float = Field(default=1.0, gt=0)
    stall_after_s: float = Field(
        default=600.0, gt=0, description="A running answer with no change for this long fails."
    )
    sweep_every_s: float = Field(default=30.0, gt=0)
    retention_days: float = Field(default=30.0, gt=0)
    retention_every_s: float = Field(default=3600.0, gt=0)
    history_max_turns: int = Field(default=20, ge=0)
