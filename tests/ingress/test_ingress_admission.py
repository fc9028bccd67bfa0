"""The pure admission rules and the settings guards, without any server."""

from __future__ import annotations

import uuid

import pytest
from pydantic import ValidationError

from services.core.contracts import ChatRequested
from services.ingress.admission import (
    Rejection,
    check_idempotency_key,
    check_message,
    check_user_id,
    derive_response_id,
    resolve_model,
    same_request,
)
from services.ingress.settings import FALLBACK_MODEL, IngressSettings


def test_derived_response_id_is_stable_per_user_and_key_and_a_valid_uuid4() -> None:
    rid = derive_response_id(b"s", "alice", "k")

    assert rid == derive_response_id(b"s", "alice", "k")
    assert rid.version == 4 and rid.variant == uuid.RFC_4122
    assert len({rid, derive_response_id(b"s", "bob", "k"), derive_response_id(b"s", "alice", "k2")}) == 3


def test_message_rules_count_unicode_characters() -> None:
    assert check_message("🙂" * 3, max_chars=3) == "🙂" * 3
    with pytest.raises(Rejection, match="message is 4 characters long; the limit is 3 characters"):
        check_message("🙂" * 4, max_chars=3)
    with pytest.raises(Rejection, match="message must not be empty"):
        check_message("\u3000 \n", max_chars=3)


def test_model_defaults_and_allow_list() -> None:
    assert resolve_model(None, allowed=("a", "b"), default="a") == "a"
    assert resolve_model("b", allowed=("a", "b"), default="a") == "b"
    with pytest.raises(Rejection, match="unknown model 'c'; allowed models: a, b"):
        resolve_model("c", allowed=("a", "b"), default="a")


def test_user_id_and_idempotency_key_shapes() -> None:
    assert check_user_id(None) == "anonymous"
    assert check_user_id("a.b_c-d@e") == "a.b_c-d@e"
    assert check_idempotency_key(None) is None
    assert check_idempotency_key("k" * 255) == "k" * 255
    for bad in ("", "k" * 256, "tab\there", "é"):
        with pytest.raises(Rejection) as caught:
            check_idempotency_key(bad)
        assert caught.value.status == 400
    with pytest.raises(Rejection):
        check_user_id("has space")


def test_same_request_names_what_differs() -> None:
    conversation = uuid.uuid4()
    stored = ChatRequested(
        event_id="x", response_id=uuid.uuid4(), conversation_id=conversation, user_id="u", message="m", model="a"
    )

    assert same_request(stored, message="m", model="a", conversation_id=None) is None
    assert same_request(stored, message="m", model="a", conversation_id=conversation) is None
    assert same_request(stored, message="other", model="a", conversation_id=None) == "a different message"
    assert same_request(stored, message="m", model="b", conversation_id=None) == "model 'a'"
    assert same_request(stored, message="m", model="a", conversation_id=uuid.uuid4()) == f"conversation {conversation}"


def _settings(monkeypatch: pytest.MonkeyPatch, **env: str) -> IngressSettings:
    for name in ("OPENAI_MODEL", "INGRESS_DEFAULT_MODEL", "INGRESS_ALLOWED_MODELS", "INGRESS_ID_SECRET", "RELAY_ENV"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return IngressSettings(_env_file=None)  # type: ignore[call-arg]


def test_default_model_comes_from_ingress_then_openai_then_the_offline_model(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings(monkeypatch).default_model == FALLBACK_MODEL
    assert _settings(monkeypatch).allowed_model_list == (FALLBACK_MODEL,)
    assert _settings(monkeypatch, OPENAI_MODEL="gpt-4o-mini").default_model == "gpt-4o-mini"
    both = _settings(
        monkeypatch, OPENAI_MODEL="gpt-4o-mini", INGRESS_DEFAULT_MODEL="x", INGRESS_ALLOWED_MODELS="x, y,x"
    )
    assert both.default_model == "x" and both.allowed_model_list == ("x", "y")


def test_settings_refuse_a_default_model_outside_the_allow_list(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValidationError, match="is not in INGRESS_ALLOWED_MODELS"):
        _settings(monkeypatch, INGRESS_DEFAULT_MODEL="x", INGRESS_ALLOWED_MODELS="y,z")


def test_production_refuses_the_placeholder_id_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _settings(monkeypatch, RELAY_ENV="development")  # fine for local work
    with pytest.raises(ValidationError, match="INGRESS_ID_SECRET is still the placeholder"):
        _settings(monkeypatch, RELAY_ENV="production")
    assert _settings(monkeypatch, RELAY_ENV="production", INGRESS_ID_SECRET="a-long-random-value")
