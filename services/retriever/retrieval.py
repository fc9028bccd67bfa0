"""Question → the passages that should ground its answer: embed, search, keep the best ``top_k``."""

from __future__ import annotations

from collections.abc import Sequence

from services.core.contracts import Passage
from services.retriever.embedders import Embedder
from services.retriever.qdrant_store import StoredHit, VectorStore

__all__ = ["select_passages", "retrieve"]


def select_passages(
    hits: Sequence[StoredHit], *, top_k: int, score_threshold: float | None = None
) -> tuple[Passage, ...]:
    """Best first, at most ``top_k``, none below ``score_threshold``, one passage per (source, position)."""
    seen: set[tuple[str, int]] = set()
    out: list[Passage] = []
    for h in sorted(hits, key=lambda h: h.score, reverse=True):
        if score_threshold is not None and h.score < score_threshold:
            break
        key = (h.source, h.position)
        if key in seen or not h.text.strip():
            continue
        seen.add(key)
        out.append(
            Passage(text=h.text, source=h.source, position=h.position, heading=h.heading, score=round(h.score, 6))
        )
        if len(out) >= top_k:
            break
    return tuple(out)


async def retrieve(
    question: str, *, embedder: Embedder, store: VectorStore, top_k: int, score_threshold: float | None = None
) -> tuple[Passage, ...]:
    """An empty collection is not an error: it gives no passages."""
    vector = await embedder.embed_query(question)
    hits = await store.search(vector, limit=top_k, score_threshold=score_threshold)
    return select_passages(hits, top_k=top_k, score_threshold=score_threshold)
