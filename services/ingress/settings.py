"""Ingress configuration: every ``INGRESS_*`` variable (plus the shared NATS/logging ones)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr, model_validator
from pydantic_settings import SettingsConfigDict

from services.core.settings import BaseServiceSettings

__all__ = ["IngressSettings", "PLACEHOLDER_SECRET", "FALLBACK_MODEL"]

PLACEHOLDER_SECRET = "change-me-relay-ingress-id-secret"
FALLBACK_MODEL = "smollm2-135m-instruct"


class IngressSettings(BaseServiceSettings):
    """``INGRESS_HOST``, ``INGRESS_PORT``, limits, the model allow-list and the id secret."""

    model_config = SettingsConfigDict(env_prefix="INGRESS_", env_file=".env", env_file_encoding="utf-8", extra="ignore")

    service_name: str = Field(default="ingress", validation_alias="SERVICE_NAME")
    env: str = Field(default="development", validation_alias="RELAY_ENV")

    host: str = "127.0.0.1"
    port: int = 8701
    public_base_url: str = Field(default="", description="Prefix for the returned URLs, e.g. https://relay.example.com")
    status_base_url: str = Field(
        default="",
        description="Where clients reach the status service, for poll_url/final_url (default: public_base_url)",
    )

    max_message_chars: int = Field(default=8000, ge=1)
    max_body_bytes: int = Field(default=128 * 1024, ge=256)  # 8,000 JSON-escaped emoji need 96 KiB
    default_model: str = Field(
        default=FALLBACK_MODEL, validation_alias=AliasChoices("INGRESS_DEFAULT_MODEL", "OPENAI_MODEL")
    )
    allowed_models: str = Field(default="", description="Comma-separated; empty means only the default model")

    id_secret: SecretStr = SecretStr(PLACEHOLDER_SECRET)

    publish_timeout_s: float = Field(default=2.0, gt=0)
    nats_connect_attempts: int = Field(default=20, ge=1)
    nats_connect_timeout_s: float = Field(default=2.0, gt=0)
    nats_retry_wait_s: float = Field(default=0.5, ge=0)

    @property
    def allowed_model_list(self) -> tuple[str, ...]:
        names = tuple(dict.fromkeys(m.strip() for m in self.allowed_models.split(",") if m.strip()))
        return names or (self.default_model,)

    @model_validator(mode="after")
    def _check(self) -> IngressSettings:
        if self.default_model not in self.allowed_model_list:
            raise ValueError(
                f"the default model {self.default_model!r} (INGRESS_DEFAULT_MODEL or OPENAI_MODEL) is not in "
                f"INGRESS_ALLOWED_MODELS ({', '.join(self.allowed_model_list)}): add it there"
            )
        if self.env.lower() in ("production", "prod") and self.id_secret.get_secret_value() in ("", PLACEHOLDER_SECRET):
            raise ValueError(
                "INGRESS_ID_SECRET is still the placeholder while RELAY_ENV=production: set it to a long random "
                "value (e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
            )
        return self
