"""Fixtures for the real-browser tests: the whole stack with the scripted provider, and Debian's Chromium.

One stack per session (nats-server, PostgreSQL, the four services, Streamlit): starting it takes
a while, and every test works in a conversation of its own (each page gets its own user id in the
URL), so tests do not see each other's answers. The provider answers each question with the
script the test registered for it (``answers``), else the echo answer.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services.devstack.scripted_provider import Script, ScriptedProvider, echo_script
from services.devstack.stack import Stack

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # `ui` is a top-level folder of the checkout, not an installed package
    sys.path.insert(0, str(ROOT))

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM = os.environ.get("RELAY_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
]  # fmt: skip


class Answers:
    """Per-question scripts for the provider: ``answers["question"] = Script(...)`` or a list (one per call)."""

    def __init__(self, provider: ScriptedProvider) -> None:
        self.provider = provider
        self.by_question: dict[str, Script | list[Script]] = {}
        provider.respond_with(self._choose)

    def __setitem__(self, question: str, script: Script | list[Script]) -> None:
        self.by_question[question] = script

    def _choose(self, body: Any) -> Script:
        asked = next(
            (str(m.get("content", "")) for m in reversed(body.get("messages") or []) if m.get("role") == "user"), ""
        )
        for question, script in self.by_question.items():
            if question in asked:
                if isinstance(script, list):
                    return script.pop(0) if len(script) > 1 else script[0]
                return script
        return echo_script(body)

    def calls_for(self, question: str) -> list[Any]:
        """Provider calls whose last user message carries ``question``."""
        out = []
        for call in self.provider.calls:
            users = [str(m.get("content", "")) for m in call.messages if m.get("role") == "user"]
            if users and question in users[-1]:
                out.append(call)
        return out


@pytest.fixture(scope="module")
def provider() -> Iterator[ScriptedProvider]:
    """The scriptable OpenAI-compatible server every generator call goes to."""
    with ScriptedProvider() as p:
        yield p


@pytest.fixture(scope="module")
def stack(provider: ScriptedProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """The real stack on free ports (chat included), its model calls going to ``provider``."""
    env = {
        "OPENAI_BASE_URL": provider.base_url,
        "OPENAI_API_KEY": "scripted",
        "UI_BACKOFF_MAX_S": "2",  # a back-off a test can wait for; the product default is 4 s
        "STREAMLIT_CLIENT_TOOLBAR_MODE": "minimal",
    }
    with Stack.isolated(tmp_path_factory.mktemp("stack"), env=env, ui=True) as s:
        yield s


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never `playwright install`).

    Module scope: Playwright's sync API keeps an event loop running in this thread while it is
    open, which would break every asyncio test collected after this module.
    """
    if not Path(CHROMIUM).exists() and not shutil.which("chromium"):
        pytest.fail(f"Chromium not found at {CHROMIUM}: apt-get install -y chromium (scripts/test installs it)")
    from playwright.sync_api import expect, sync_playwright

    expect.set_options(timeout=20_000)  # a first Streamlit render on a busy 2-core machine takes > 5 s

    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def answers(provider: ScriptedProvider) -> Iterator[Answers]:
    """Register the provider's answer per question for this test."""
    a = Answers(provider)
    yield a
    provider.reset()


@pytest.fixture
def page(browser: Any, stack: Stack) -> Iterator[Any]:
    """A fresh browser context (a new user) on the chat page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    context.set_default_timeout(20_000)
    pg = context.new_page()
    pg.goto(stack.urls["chat"])
    yield pg
    context.close()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """Where screenshots go (gitignored)."""
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS
