"""Real input: the sample legal corpus and its questions, answered by the offline SmolLM2 model."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.devstack.stack import Stack
from tests.e2e.client import follow, submit

pytestmark = [pytest.mark.model, pytest.mark.slow]


@pytest.fixture(scope="module")
def model_stack(tmp_path_factory: pytest.TempPathFactory, corpus_dir: Path) -> Iterator[Stack]:
    """The stack as ``relay up`` runs it: the offline model server, the corpus loaded on first start."""
    env = {"RETRIEVER_SEED_DIR": str(corpus_dir), "GENERATOR_MAX_TOKENS": "160"}
    with Stack.isolated(tmp_path_factory.mktemp("model-stack"), env=env, ui=False) as s:
        yield s


def _questions(corpus_dir: Path) -> list[dict]:
    lines = (corpus_dir.parent / "questions.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


async def test_every_corpus_question_gets_a_grounded_answer_from_the_offline_model(model_stack, corpus_dir):
    questions = _questions(corpus_dir)
    hits = 0
    async with (
        httpx.AsyncClient(base_url=model_stack.url_of("ingress"), timeout=10) as ingress,
        httpx.AsyncClient(base_url=model_stack.url_of("status"), timeout=10) as status,
    ):
        for q in questions:
            accepted = await submit(ingress, q["question"])
            followed = await follow(status, accepted["response_id"], timeout_s=240)
            view = followed.last
            assert view["status"] in ("completed", "truncated"), view
            assert followed.received.strip(), f"{q['id']}: empty answer"
            top3 = view["sources"][:3]
            if any(
                s["source"] == q["source"] and any(p.lower() in s["text"].lower() for p in q["passage_contains"])
                for s in top3
            ):
                hits += 1
    sys.stderr.write(f"\nreal input: {hits}/{len(questions)} questions have the right passage in the top 3\n")
    assert hits >= 11
