"""Fixtures for the chat page's tests: a real HTTP stub of the relay API and the page under AppTest."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `ui` is a top-level folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

from relay_stub import RelayStub  # noqa: E402


@pytest.fixture
def stub() -> Iterator[RelayStub]:
    """A real HTTP server on a free port serving scripted relay answers."""
    with RelayStub() as s:
        yield s


@pytest.fixture
def page_env(stub: RelayStub, monkeypatch: pytest.MonkeyPatch) -> RelayStub:
    """Point the page at ``stub``, with a back-off short enough for tests."""
    monkeypatch.setenv("RELAY_INGRESS_URL", stub.url)
    monkeypatch.setenv("RELAY_STATUS_URL", stub.url)
    monkeypatch.setenv("UI_BACKOFF_BASE_S", "0.01")
    monkeypatch.setenv("UI_BACKOFF_MAX_S", "0.02")
    monkeypatch.delenv("UI_USER_ID", raising=False)
    return stub
