"""``relay ingest``: send ``.txt``/``.md`` files to the retriever's document API, one request per file.

When the retriever is not running, the documents go straight into the vector store through the
retriever's own ingestion code (imported only then: it loads the embedder and Qdrant).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from services.cli.client import TIMEOUT, CliError, Unreachable, failure_from

__all__ = ["SUFFIXES", "Plan", "plan_files", "ingest"]

SUFFIXES = (".txt", ".md")


@dataclass
class Plan:
    files: list[Path]
    skipped: list[tuple[Path, str]]


def plan_files(paths: Iterable[str]) -> Plan:
    """The ``.txt``/``.md`` files named or found under the folders named; everything else with a reason."""
    files: list[Path] = []
    skipped: list[tuple[Path, str]] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found = [p for p in sorted(path.rglob("*")) if p.is_file() and not _hidden(p.relative_to(path))]
        elif path.is_file():
            found = [path]
        else:
            skipped.append((path, "no such file or folder"))
            continue
        for p in found:
            if p.suffix.lower() in SUFFIXES:
                files.append(p)
            else:
                skipped.append((p, "only .txt and .md files are ingested"))
    return Plan(files, skipped)


def _hidden(relative: Path) -> bool:
    return any(part.startswith(".") for part in relative.parts)


def _chunks_of(body: Any, source: str) -> int | None:
    """The chunk count the document API reported for ``source`` (it may answer in a few shapes)."""
    entries = (body.get("documents") or body.get("ingested") or []) if isinstance(body, dict) else body
    for entry in entries if isinstance(entries, list) else []:
        if isinstance(entry, dict) and entry.get("source") == source:
            for key in ("chunks", "chunk_count", "points"):
                if isinstance(entry.get(key), int):
                    return int(entry[key])
    if isinstance(body, dict) and isinstance(body.get("chunks"), int):
        return int(body["chunks"])
    return None


def _send(http: httpx.Client, url: str, path: Path) -> int | None:
    text = path.read_text(encoding="utf-8")
    try:
        r = http.post(f"{url.rstrip('/')}/api/documents", json={"documents": [{"source": path.name, "text": text}]})
    except (httpx.ConnectError, httpx.ConnectTimeout) as exc:
        raise Unreachable("retriever", url, exc) from exc
    if r.status_code not in (200, 201, 202):
        raise failure_from("retriever", r)
    return _chunks_of(r.json(), path.name)


def ingest(paths: Sequence[str], *, retriever_url: str, timeout_s: float, out: TextIO, notes: TextIO) -> int:
    """Returns the exit code: 0 when every ``.txt``/``.md`` file went in."""
    plan = plan_files(paths)
    for path, why in plan.skipped:
        notes.write(f"skipped {path}: {why}\n")
    if not plan.files:
        notes.write("nothing to ingest: give .txt or .md files, or folders holding them\n")
        return 2
    failed = 0
    timeout = httpx.Timeout(timeout_s, connect=TIMEOUT.connect)
    with httpx.Client(timeout=timeout) as http:
        for i, path in enumerate(plan.files):
            try:
                chunks = _send(http, retriever_url, path)
            except Unreachable:
                notes.write(
                    f"the retriever's document API at {retriever_url} is not reachable: ingesting directly into the "
                    "vector store the retriever uses (QDRANT_URL, or the folder RETRIEVER_QDRANT_PATH)\n"
                )
                return _ingest_directly(plan.files[i:], out=out, notes=notes, failed=failed)
            except (CliError, UnicodeDecodeError, OSError, httpx.HTTPError) as exc:
                failed += 1
                notes.write(f"failed {path}: {exc}\n")
                continue
            out.write(f"{path.name}: {'?' if chunks is None else chunks} chunks\n")
            out.flush()
    return 1 if failed else 0


def _ingest_directly(files: Sequence[Path], *, out: TextIO, notes: TextIO, failed: int) -> int:
    try:
        from services.cli.direct_ingest import ingest_files  # heavy: the embedder and Qdrant
    except ImportError as exc:
        notes.write(f"direct ingestion is not available here ({exc}); start the stack with `relay up` and retry\n")
        return 3
    try:
        results = asyncio.run(ingest_files(files, notes=notes))
    except Exception as exc:  # the retriever's own errors say what is wrong (locked folder, bad document…)
        notes.write(f"direct ingestion failed: {exc}\n")
        return 1
    for source, chunks in results:
        out.write(f"{source}: {chunks} chunks\n")
    return 1 if failed else 0
