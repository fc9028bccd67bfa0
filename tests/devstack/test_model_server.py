"""The offline model server: SmolLM2 answers a streamed chat completion through the official openai client."""

from __future__ import annotations

import asyncio

import pytest
from openai import AsyncOpenAI

from services.devstack.model_server import ModelServer, ModelServerError, find_model_file
from services.devstack.settings import LOCAL_MODEL_ALIAS


@pytest.mark.model
async def test_model_server_streams_a_chat_completion_through_the_openai_client(tmp_path):
    with ModelServer(log_file=tmp_path / "model.log") as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="local-no-key-needed")
        stream = await client.chat.completions.create(
            model=LOCAL_MODEL_ALIAS,
            messages=[{"role": "user", "content": "Name one colour of the sky."}],
            stream=True,
            max_tokens=12,
            temperature=0,
        )
        pieces, finish = [], None
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
                finish = chunk.choices[0].finish_reason or finish
        models = await client.models.list()
        await client.close()

    assert sum(1 for p in pieces if p) >= 2, "the answer arrives as several streamed pieces"
    assert "".join(pieces).strip()
    assert finish in ("stop", "length")
    assert [m.id for m in models.data] == [LOCAL_MODEL_ALIAS]
    assert server.proc is None


@pytest.mark.model
async def test_two_answers_at_once_both_finish_instead_of_the_second_cutting_the_first(tmp_path):
    async def answer(client: AsyncOpenAI, question: str) -> str | None:
        stream = await client.chat.completions.create(
            model=LOCAL_MODEL_ALIAS, messages=[{"role": "user", "content": question}], stream=True, max_tokens=12
        )
        finish = None
        async for chunk in stream:
            if chunk.choices:
                finish = chunk.choices[0].finish_reason or finish
        return finish

    with ModelServer(log_file=tmp_path / "model.log") as server:
        client = AsyncOpenAI(base_url=server.base_url, api_key="local-no-key-needed", max_retries=0)
        finishes = await asyncio.gather(answer(client, "Say hi."), answer(client, "Name a fruit."))
        await client.close()

    assert all(f in ("stop", "length") for f in finishes), finishes


@pytest.mark.model
def test_model_server_that_cannot_load_its_model_fails_with_its_log(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"not a gguf file")

    with pytest.raises(ModelServerError, match=r"exited \(rc=\d+\) before it was ready; its last log lines"):
        ModelServer(model_path=broken, log_file=tmp_path / "model.log").start(timeout=60)


def test_model_server_names_a_missing_model_file(tmp_path):
    with pytest.raises(ModelServerError, match="does not exist"):
        ModelServer(model_path=tmp_path / "missing.gguf").start()


@pytest.mark.model
def test_the_smollm2_model_file_ships_in_the_installed_package():
    path = find_model_file()
    assert path.suffix == ".gguf" and path.stat().st_size > 50_000_000
