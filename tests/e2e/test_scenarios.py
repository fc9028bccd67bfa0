"""Scenarios seen in real deployments, end to end through HTTP against the whole stack."""

from __future__ import annotations

import random
import unicodedata

import httpx
import pytest

from services.devstack.scripted_provider import Script, finish_chunk, no_choices_chunk, text_chunk, usage_chunk
from tests.e2e.client import follow, submit
from tests.e2e.proxy import StrictProxy


@pytest.mark.slow
async def test_long_answer_completes_behind_a_proxy_that_cuts_requests_at_10_s(stack, provider, tmp_path):
    tokens = [f"word{i} " for i in range(70)]
    provider.script(Script(tokens=tokens, first_token_delay_s=13.0, token_interval_s=0.1))  # tokens 13 s → 20 s
    with StrictProxy(tmp_path / "nginx", ingress_port=stack.port_of("ingress"), status_port=stack.port_of("status"),
                     limit_s=10) as proxy:  # fmt: skip
        async with httpx.AsyncClient(base_url=proxy.url, timeout=30) as client:
            accepted = await submit(client, "Explain the GPL in great detail.")
            followed = await follow(client, accepted["response_id"], timeout_s=90)
            final = (await client.get(f"/api/response/{accepted['response_id']}/final")).json()
        seen = proxy.requests()
    assert followed.last["status"] == "completed"
    assert final["text"] == "".join(tokens) == followed.received
    assert all(r.status < 500 for r in seen), [r for r in seen if r.status >= 500]
    assert len(seen) == followed.polls + 2
    assert max(r.seconds for r in seen) < 1.0, max(seen, key=lambda r: r.seconds)


async def test_provider_dropping_mid_stream_fails_the_answer_and_keeps_the_partial_text(ingress, status, provider):
    provider.script(Script(tokens=["The ", "answer ", "is ", "cut ", "here"], token_interval_s=0.05, drop_after=3))
    accepted = await submit(ingress, "What does the MPL say?")
    followed = await follow(status, accepted["response_id"], timeout_s=60)
    view = followed.last
    assert view["status"] == "failed"
    assert view["error"]["code"] == "provider_disconnected"
    assert view["error"]["message"]
    assert followed.received == "The answer is "
    final = await status.get(f"/api/response/{accepted['response_id']}/final")
    assert final.json()["status"] == "failed" and final.json()["text"] == "The answer is "


def _multibyte_text(n: int) -> str:
    rng = random.Random(7)
    pieces = ["漢字", "かな", "한국어", "😀", "👩‍👩‍👧", "🇪🇺", "e\u0301", "n\u0303", "Å", "ß", " ", "。"]
    out = ""
    while len(out) < n:
        out += rng.choice(pieces)
    return out[:n]


async def test_multibyte_text_split_at_byte_boundaries_arrives_exact_through_since_polls(ingress, status, provider):
    text = _multibyte_text(2000)
    tokens = [text[i : i + 7] for i in range(0, len(text), 7)]
    provider.script(Script(tokens=tokens, token_interval_s=0.01, split_bytes=[1, 2, 3, 5, 7, 11]))
    accepted = await submit(ingress, "Write something in many scripts.")
    followed = await follow(status, accepted["response_id"], interval_s=0.3, timeout_s=90)
    assert followed.last["status"] == "completed"
    assert "\ufffd" not in followed.received
    assert followed.received == text
    assert followed.polls > 3  # it really streamed across several polls
    final = (await status.get(f"/api/response/{accepted['response_id']}/final")).json()
    assert final["text"] == text
    assert unicodedata.normalize("NFC", final["text"]) == unicodedata.normalize("NFC", text)


@pytest.mark.parametrize(
    ("chunks", "status_", "text"),
    [
        pytest.param(
            [no_choices_chunk(), text_chunk("Short."), finish_chunk("stop"), usage_chunk(11, 2)],
            "completed", "Short.", id="empty-choices-and-usage-only-final",
        ),
        pytest.param(
            [text_chunk("Cut off"), finish_chunk("length"), usage_chunk(11, 2)], "truncated", "Cut off", id="length",
        ),
        pytest.param(
            [finish_chunk("content_filter"), usage_chunk(11, 0)], "content_filtered", "", id="content-filter-no-text",
        ),
    ],
)  # fmt: skip
async def test_odd_provider_chunks_end_in_their_own_visible_state_with_usage(
    ingress, status, provider, chunks, status_, text
):
    provider.script(Script(chunks=chunks, finish_reason=None, send_usage=False))
    accepted = await submit(ingress, "Odd chunks, please.")
    followed = await follow(status, accepted["response_id"], timeout_s=60)
    assert followed.last["status"] == status_
    assert followed.received == text
    final = (await status.get(f"/api/response/{accepted['response_id']}/final")).json()
    assert final["status"] == status_
    assert final["usage"]["prompt_tokens"] == 11
    assert final["usage"]["completion_tokens"] == chunks[-1]["usage"]["completion_tokens"]
