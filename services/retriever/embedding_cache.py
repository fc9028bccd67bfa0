"""Remember passage vectors by (embedder, text) in a SQLite file, so unchanged text is never embedded twice.

Re-ingesting a folder, re-seeding a fresh stack or restarting with an empty collection then costs
a lookup per chunk instead of a forward pass (the offline model embeds ~3 chunks/s on 2 cores).
Queries are not cached. The key includes the embedder's name and version, so a new model or
package version misses. A cache that cannot be opened or written is skipped with a warning.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import sqlite3
import threading
from array import array
from collections.abc import Sequence
from pathlib import Path

from services.retriever.embedders import Embedder

__all__ = ["CachedEmbedder"]

log = logging.getLogger(__name__)


class _Vectors:
    """key → float32 vector, in one SQLite table (WAL: several processes may share the file)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, timeout=30.0, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vector BLOB NOT NULL)")
        self._lock = threading.Lock()

    def get_many(self, keys: Sequence[str]) -> dict[str, list[float]]:
        out: dict[str, list[float]] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                part = list(keys[i : i + 500])
                marks = ",".join("?" * len(part))
                for key, blob in self._db.execute(f"SELECT key, vector FROM vectors WHERE key IN ({marks})", part):
                    vec = array("f")
                    vec.frombytes(blob)
                    out[key] = vec.tolist()
        return out

    def put_many(self, items: Sequence[tuple[str, Sequence[float]]]) -> None:
        rows = [(k, array("f", v).tobytes()) for k, v in items]
        with self._lock:
            self._db.execute("BEGIN")
            self._db.executemany("INSERT OR REPLACE INTO vectors (key, vector) VALUES (?, ?)", rows)
            self._db.execute("COMMIT")

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CachedEmbedder:
    """An ``Embedder`` whose passage vectors come from the cache when the same text was embedded before."""

    def __init__(self, inner: Embedder, path: str | Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self._store: _Vectors | None = None
        self._broken = False
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def dimension(self) -> int:
        return self.inner.dimension

    def _key(self, text: str) -> str:
        version = getattr(self.inner, "version", "")
        raw = f"{self.inner.name}\0{version}\0{self.inner.dimension}\0passage\0{text}"
        return hashlib.sha256(raw.encode("utf-8")).hexdigest()

    def _open(self) -> _Vectors | None:
        if self._store is None and not self._broken:
            try:
                self._store = _Vectors(self.path)
            except (OSError, sqlite3.Error) as exc:
                self._broken = True
                log.warning("embedding cache %s unavailable (%s); embedding without it", self.path, exc)
        return self._store

    async def embed_query(self, text: str) -> list[float]:
        return await self.inner.embed_query(text)

    async def embed_passages(self, texts: Sequence[str]) -> list[list[float]]:
        store = await asyncio.to_thread(self._open)
        if store is None:
            return await self.inner.embed_passages(texts)
        keys = [self._key(t) for t in texts]
        try:
            found = await asyncio.to_thread(store.get_many, keys)
        except sqlite3.Error as exc:
            log.warning("embedding cache read failed (%s); embedding without it", exc)
            found = {}
        missing = [i for i, k in enumerate(keys) if k not in found]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            fresh = await self.inner.embed_passages([texts[i] for i in missing])
            for i, vec in zip(missing, fresh, strict=True):
                found[keys[i]] = vec
            try:
                await asyncio.to_thread(store.put_many, [(keys[i], found[keys[i]]) for i in missing])
            except sqlite3.Error as exc:
                log.warning("embedding cache write failed (%s)", exc)
        return [found[k] for k in keys]

    async def warm_up(self) -> None:
        warm_up = getattr(self.inner, "warm_up", None)
        if warm_up is not None:
            await warm_up()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
