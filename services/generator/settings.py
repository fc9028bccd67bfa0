"""Generator configuration: every ``GENERATOR_*`` variable, plus ``OPENAI_*`` and the shared NATS/logging ones."""

from __future__ import annotations

import os
import socket

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from services.core.settings import BaseServiceSettings

__all__ = ["GeneratorSettings", "DEFAULT_MODEL"]

#: What the offline model server of the local stack answers to (``OPENAI_MODEL`` overrides it).
DEFAULT_MODEL = "smollm2-135m-instruct"


def _worker_id() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


class GeneratorSettings(BaseServiceSettings):
    """``GENERATOR_HOST``/``GENERATOR_PORT`` (probes), consumer and streaming limits, the provider."""

    model_config = SettingsConfigDict(
        env_prefix="GENERATOR_", env_file=".env", env_file_encoding="utf-8", extra="ignore"
    )

    service_name: str = Field(default="generator", validation_alias="SERVICE_NAME")
    host: str = "127.0.0.1"
    port: int = Field(default=8704, ge=0, le=65535)
    worker_id: str = Field(default_factory=_worker_id, description="Names this replica in GenerationStarted")

    # the provider
    openai_base_url: str | None = Field(default=None, validation_alias="OPENAI_BASE_URL")
    openai_api_key: SecretStr | None = Field(default=None, validation_alias="OPENAI_API_KEY")
    openai_model: str = Field(default=DEFAULT_MODEL, validation_alias="OPENAI_MODEL")
    provider_max_retries: int = Field(default=2, ge=0, description="The openai client's own retries (with back-off)")
    provider_connect_timeout_s: float = Field(default=10.0, gt=0)
    stall_timeout_s: float = Field(default=60.0, gt=0, description="No token for this long ends the answer")
    max_tokens: int | None = Field(default=None, ge=1, description="Cap on the answer's tokens (None: the provider's)")
    temperature: float | None = Field(default=None, ge=0, le=2, description="None: the provider's default")

    # the consumer
    concurrency: int = Field(default=8, ge=1, description="Answers one replica streams at once")
    ack_wait_s: float = Field(default=30.0, gt=0)
    max_deliver: int = Field(default=3, ge=1)
    fetch_timeout_s: float = Field(default=1.0, gt=0)
    retry_delay_s: float = Field(default=2.0, ge=0, description="First nak delay after a transient failure; doubles")
    drain_s: float = Field(default=25.0, ge=0, description="On SIGTERM, how long running answers may finish")

    # deltas
    flush_ms: float = Field(default=50.0, ge=0)
    flush_chars: int = Field(default=256, ge=1)
    publish_timeout_s: float = Field(default=5.0, gt=0)
    publish_attempts: int = Field(default=6, ge=1)

    # the prompt
    max_passage_chars: int = Field(default=12000, ge=0)
    max_history_turns: int = Field(default=6, ge=0)
    max_turn_chars: int = Field(default=2000, ge=0)
    history_timeout_s: float = Field(default=2.0, gt=0)
    history_attempts: int = Field(default=3, ge=1)

    @property
    def api_key(self) -> str:
        """The key, or a dummy one: local servers (llama.cpp, vLLM, Ollama) need none but the client wants one."""
        key = self.openai_api_key.get_secret_value() if self.openai_api_key else ""
        return key or "no-key-needed"
