"""The chat in a real Chromium against the real stack: streaming, double submits, reloads, outages, cancel, retry.

Every answer comes from the scripted provider on a timeline, so "mid-stream" is a window of
seconds, not a race. Screenshots of the chat go to test-artifacts/.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

import httpx
import pytest
from playwright.sync_api import Locator, Page, expect

from services.devstack.scripted_provider import Script
from services.devstack.stack import Stack

pytestmark = pytest.mark.browser

TERMINAL = {"completed", "truncated", "content_filtered", "failed", "cancelled"}
SENTENCE = (
    "Under the GPL you may convey modified source versions, provided the work carries prominent notices "
    "stating that you modified it, is licensed as a whole under the same License, and keeps the legal notices intact."
)


def tokens(text: str) -> list[str]:
    words = text.split(" ")
    return [w + " " for w in words[:-1]] + [words[-1]]


def streamed(text: str, *, seconds: float, first_token_s: float = 0.5, **kwargs: Any) -> Script:
    """``text`` word by word, spread over ``seconds``."""
    toks = tokens(text)
    return Script(tokens=toks, first_token_delay_s=first_token_s, token_interval_s=seconds / len(toks), **kwargs)


def long_text(words: int) -> str:
    base = SENTENCE.split(" ")
    return " ".join(base[i % len(base)] for i in range(words)) + "."


# --- reading the page ---------------------------------------------------------------------------


def ask(page: Page, question: str) -> None:
    box = page.get_by_test_id("stChatInputTextArea")
    expect(box).to_be_enabled()
    box.fill(question)
    box.press("Enter")


def main(page: Page) -> Locator:
    return page.get_by_test_id("stMainBlockContainer")


def answer_text(page: Page, n: int) -> str:
    loc = page.locator(f".st-key-answer-text-{n}")
    if loc.count() == 0:
        return ""
    return " ".join(loc.first.inner_text().replace("▍", " ").split())


def state(page: Page, n: int) -> str | None:
    loc = page.locator(f".st-key-turn-{n} .relay-status")
    return loc.first.get_attribute("data-state") if loc.count() else None


def wait(predicate: Callable[[], bool], *, timeout: float, what: str, every: float = 0.2) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def wait_state(page: Page, n: int, states: set[str], *, timeout: float = 60) -> str:
    wait(
        lambda: state(page, n) in states,
        timeout=timeout,
        what=f"turn {n} to be one of {sorted(states)} (is {state(page, n)})",
    )
    return str(state(page, n))


def normalized(text: str) -> str:
    return " ".join(text.split())


def params(page: Page) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlparse(page.url).query).items()}


def conversation(stack: Stack, page: Page) -> dict[str, Any]:
    """The conversation of the page's URL, as the status service has it."""
    p = params(page)
    resp = httpx.get(f"{stack.urls['status']}/api/conversation/{p['c']}", headers={"X-User-Id": p["u"]}, timeout=5)
    resp.raise_for_status()
    return dict(resp.json())


def final_text(stack: Stack, page: Page, response_id: str) -> str:
    resp = httpx.get(
        f"{stack.urls['status']}/api/response/{response_id}/final", headers={"X-User-Id": params(page)["u"]}, timeout=5
    )
    assert resp.status_code == 200, resp.text
    return str(resp.json()["text"])


def user_bubbles(page: Page, question: str) -> int:
    return (
        page.locator('[data-testid="stChatMessage"]')
        .filter(has_text=question)
        .filter(has=page.locator('[data-testid="stChatMessageAvatarUser"]'))
        .count()
    )


# --- the tests ----------------------------------------------------------------------------------


def test_answer_streams_in_then_completes_with_citations_and_timings(
    page: Page, stack: Stack, answers: Any, artifacts: Path
) -> None:
    question = "What must I do to convey modified GPL source versions?"
    answers[question] = streamed(SENTENCE, seconds=8)
    ask(page, question)
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_disabled()
    samples: list[str] = []
    shot = False
    deadline = time.monotonic() + 60
    while state(page, 0) not in TERMINAL and time.monotonic() < deadline:
        text = answer_text(page, 0)
        if text and (not samples or text != samples[-1]):
            samples.append(text)
        if not shot and len(text) > len(SENTENCE) // 3:
            expect(page.locator(".st-key-turn-0 .relay-status[data-state='generating']")).to_be_visible()
            page.screenshot(path=artifacts / "chat-mid-stream.png")
            shot = True
        time.sleep(0.25)
    assert wait_state(page, 0, TERMINAL) == "completed"
    growing = [s for s in samples if s != normalized(SENTENCE)]
    assert len(growing) >= 3, f"the answer did not grow over several samples: {samples}"
    assert all(normalized(SENTENCE).startswith(s) for s in samples), "a sample was not a prefix of the final text"
    assert answer_text(page, 0) == normalized(SENTENCE)
    expect(page.locator(".st-key-turn-0 .relay-timing")).to_contain_text("first token")
    expect(page.locator(".st-key-turn-0 .relay-timing")).to_contain_text("total")
    expect(page.get_by_test_id("stChatInputTextArea")).to_be_enabled()
    page.screenshot(path=artifacts / "chat-completed.png")
    citation = page.locator(".st-key-turn-0 [data-testid='stExpander']").first
    expect(citation).to_contain_text("[1] ")
    citation.locator("summary").click()
    expect(citation.locator("[data-testid='stExpanderDetails']")).to_contain_text("relevance")
    page.screenshot(path=artifacts / "chat-citation-open.png")


def test_double_enter_makes_exactly_one_answer(page: Page, stack: Stack, answers: Any) -> None:
    question = f"Double enter {uuid.uuid4().hex[:6]}: what does the Apache license say about patents?"
    answers[question] = streamed("Apache grants a patent license that ends if you sue.", seconds=2)
    box = page.get_by_test_id("stChatInputTextArea")
    box.fill(question)
    box.press("Enter")
    page.keyboard.type(question)  # whatever still reaches the input...
    page.keyboard.press("Enter")  # ...and a second Enter right behind the first
    wait_state(page, 0, TERMINAL)
    time.sleep(2)  # room for a second answer to show up, if one had been made
    assert len(conversation(stack, page)["turns"]) == 1
    assert len(answers.calls_for(question)) == 1
    assert user_bubbles(page, question) == 1 and state(page, 1) is None


def test_double_click_on_send_makes_exactly_one_answer(page: Page, stack: Stack, answers: Any) -> None:
    question = f"Double click {uuid.uuid4().hex[:6]}: is the MPL file-based?"
    answers[question] = streamed("Yes, the MPL is a file-based copyleft.", seconds=2)
    page.get_by_test_id("stChatInputTextArea").fill(question)
    page.get_by_test_id("stChatInputSubmitButton").dblclick()
    wait_state(page, 0, TERMINAL)
    time.sleep(2)
    assert len(conversation(stack, page)["turns"]) == 1
    assert len(answers.calls_for(question)) == 1


def test_reload_mid_stream_brings_back_the_transcript_and_the_growing_answer(
    page: Page, stack: Stack, answers: Any
) -> None:
    question = "Reload: what does the LGPL allow for linking?"
    text = long_text(60)
    answers[question] = streamed(text, seconds=14)
    ask(page, question)
    wait(lambda: len(answer_text(page, 0)) > 20, timeout=30, what="some text before the reload")
    page.reload()
    expect(main(page).get_by_text(question)).to_be_visible()
    wait(lambda: len(answer_text(page, 0)) > 0, timeout=15, what="the running answer after the reload")
    first = answer_text(page, 0)
    wait(lambda: len(answer_text(page, 0)) > len(first), timeout=15, what="the answer to keep growing after the reload")
    assert state(page, 0) in {"generating", "completed"}
    assert wait_state(page, 0, TERMINAL) == "completed"
    assert answer_text(page, 0) == normalized(text)


@pytest.mark.slow
def test_status_service_down_20_s_shows_reconnecting_then_the_exact_full_text(
    page: Page, stack: Stack, answers: Any, artifacts: Path
) -> None:
    question = "Outage: what does the GFDL say about invariant sections?"
    text = long_text(120)
    answers[question] = streamed(text, seconds=40)
    ask(page, question)
    wait(lambda: len(answer_text(page, 0)) > 20, timeout=30, what="some text before the outage")
    stack.stop_service("status")
    try:
        down_at = time.monotonic()
        expect(page.locator(".st-key-reconnecting")).to_contain_text("Reconnecting…", timeout=20_000)
        page.screenshot(path=artifacts / "chat-reconnecting.png")
        time.sleep(max(0.0, 20 - (time.monotonic() - down_at)))
        expect(page.locator(".st-key-reconnecting")).to_be_visible()
    finally:
        stack.start_service("status")
    assert wait_state(page, 0, TERMINAL, timeout=90) == "completed"
    expect(page.locator(".st-key-reconnecting")).to_have_count(0)
    rid = conversation(stack, page)["turns"][0]["response_id"]
    assert final_text(stack, page, rid) == text  # the stored answer is exactly what the provider sent...
    assert answer_text(page, 0) == normalized(text)  # ...and so is the page: nothing doubled, nothing missing


def test_cancel_mid_stream_keeps_the_partial_text_and_closes_the_provider_stream(
    page: Page, stack: Stack, answers: Any, artifacts: Path
) -> None:
    question = "Cancel: summarise the Artistic license."
    text = long_text(80)
    answers[question] = streamed(text, seconds=30)
    ask(page, question)
    wait(lambda: len(answer_text(page, 0)) > 20, timeout=30, what="some text before cancelling")
    page.locator(".st-key-turn-0").get_by_role("button", name="Cancel").click()
    assert wait_state(page, 0, TERMINAL, timeout=30) == "cancelled"
    partial = answer_text(page, 0)
    assert partial and normalized(text).startswith(partial) and len(partial) < len(normalized(text))
    expect(page.locator(".st-key-turn-0")).to_contain_text("You cancelled this answer")
    [call] = answers.calls_for(question)
    answers.provider.wait_for(lambda _: call.disconnected, timeout=10)
    assert not call.completed
    page.screenshot(path=artifacts / "chat-cancelled.png")


def test_a_provider_failure_shows_its_cause_and_retry_gives_a_fresh_answer(
    page: Page, stack: Stack, answers: Any, artifacts: Path
) -> None:
    question = "Failure: what does CC0 waive?"
    good = "CC0 waives copyright and related rights to the fullest extent allowed by law."
    answers[question] = [
        streamed(long_text(30), seconds=6, drop_after=8, finish_reason=None, done=False),  # cut mid-answer
        streamed(good, seconds=2),
    ]
    ask(page, question)
    assert wait_state(page, 0, TERMINAL) == "failed"
    notice = page.locator(".st-key-turn-0 [data-testid='stAlertContentError']")
    expect(notice).to_contain_text("dropped the connection")
    page.screenshot(path=artifacts / "chat-failed.png")
    page.locator(".st-key-turn-0").get_by_role("button", name="Retry").click()
    assert wait_state(page, 1, TERMINAL) == "completed"
    assert answer_text(page, 1) == normalized(good)
    turns = conversation(stack, page)["turns"]
    assert [t["status"] for t in turns] == ["failed", "completed"]
    assert turns[0]["response_id"] != turns[1]["response_id"]
    assert len(answers.calls_for(question)) == 2


def test_a_follow_up_question_carries_the_earlier_turn_to_the_model(page: Page, stack: Stack, answers: Any) -> None:
    first, second = "Follow-up: is BSD permissive?", "And may I drop its notice?"
    first_answer = "Yes, BSD is a permissive license with a short notice requirement."
    answers[first] = streamed(first_answer, seconds=2)
    answers[second] = streamed("No, the notice must stay in redistributions.", seconds=2)
    ask(page, first)
    assert wait_state(page, 0, TERMINAL) == "completed"
    ask(page, second)
    assert wait_state(page, 1, TERMINAL) == "completed"
    [call] = answers.calls_for(second)
    said = " ".join(str(m.get("content", "")) for m in call.messages)
    assert first in said and first_answer in said
    assert len(conversation(stack, page)["turns"]) == 2
    page.reload()
    expect(page.locator(".st-key-answer-text-1")).to_contain_text("the notice must stay")
    assert answer_text(page, 0) == first_answer


def test_a_new_conversation_is_listed_and_an_earlier_one_reopens(page: Page, stack: Stack, answers: Any) -> None:
    first, second = (
        "Listing: what is a Larger Work in the MPL?",
        "Listing: what does the Artistic license call a Package?",
    )
    answers[first] = streamed("A Larger Work combines Covered Software with other material.", seconds=1.5)
    answers[second] = streamed(
        "The Package is the collection of files distributed by the Copyright Holder.", seconds=1.5
    )
    ask(page, first)
    assert wait_state(page, 0, TERMINAL) == "completed"
    earlier = params(page)["c"]
    page.get_by_role("button", name="New conversation").click()
    expect(page.get_by_text("What would you like to know?")).to_be_visible()
    assert "c" not in params(page)
    ask(page, second)
    assert wait_state(page, 0, TERMINAL) == "completed"
    assert params(page)["c"] != earlier
    listed = page.locator(".st-key-conversations button")
    expect(listed).to_have_count(2)
    expect(listed.nth(0)).to_contain_text("Listing: what does the Artistic")  # most recent first
    listed.nth(1).click()
    expect(page.locator(".st-key-answer-text-0")).to_contain_text("A Larger Work combines")
    assert params(page)["c"] == earlier
    page.reload()  # after completion, a reload finds the same conversation
    expect(page.locator(".st-key-answer-text-0")).to_contain_text("A Larger Work combines")
    expect(main(page).get_by_text(first)).to_be_visible()


def test_an_answer_cut_at_the_length_limit_says_so(page: Page, stack: Stack, answers: Any) -> None:
    question = "Truncated: list every condition of the GPL."
    answers[question] = streamed("First, keep the notices; second, provide the", seconds=1.5, finish_reason="length")
    ask(page, question)
    assert wait_state(page, 0, TERMINAL) == "truncated"
    expect(page.locator(".st-key-turn-0")).to_contain_text("cut off at the model's length limit")
    assert answer_text(page, 0) == "First, keep the notices; second, provide the"
