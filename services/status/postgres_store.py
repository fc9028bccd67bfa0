"""``ResponseStore`` on PostgreSQL (Supabase): the batched fold transaction, the API's reads.

Text is appended as ``response_chunks`` rows — one row per answer per flush — and never rewritten,
so writing an answer costs about its own size. A poll reads one row of ``responses`` and only the
chunks of the current attempt that end after its offset, in one statement.
"""

from __future__ import annotations

import functools
import logging
import re
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from datetime import datetime
from typing import Any, TypeVar

import psycopg
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from services.core.contracts import Event, FinishReason, Passage, Turn, Usage
from services.core.errors import TransientError
from services.core.views import ConversationSummary, ResponseStatus
from services.status import fold
from services.status.fold import Append, Decision, Outcome, ResponseState
from services.status.postgres_migrations import MIGRATIONS_DIR, apply_migrations, wait_for_database
from services.status.store import StoredConversation, StoredTurn, TextSlice

__all__ = ["PostgresStore", "apply_migrations", "wait_for_database", "MIGRATIONS_DIR"]

log = logging.getLogger(__name__)

_F = TypeVar("_F", bound=Callable[..., Awaitable[Any]])
_RUNNING = ("queued", "retrieving", "generating")

# PostgreSQL text cannot hold NUL or lone surrogates; replacing them one for one keeps offsets right.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")


def _clean(text: str) -> str:
    return _UNSTORABLE.sub("\ufffd", text)


def _clean_obj(value: Any) -> Any:
    if isinstance(value, str):
        return _clean(value)
    if isinstance(value, list):
        return [_clean_obj(v) for v in value]
    if isinstance(value, dict):
        return {k: _clean_obj(v) for k, v in value.items()}
    return value


# --- rows -------------------------------------------------------------------------------------

_COLS = (
    "id, conversation_id, user_id, question, status, created_at, updated_at, model, attempt, text_length, next_seq,"
    " chunk_count, sources, error_code, error_message, finish_reason, usage, model_ttft_ms, user_ttft_ms, total_ms,"
    " completed_at"
)
_NCOLS = 21
_FIELDS = [c.strip() for c in _COLS.split(",")]
_STATE_FIELD = {"id": "response_id"}
_STATE_NAMES = [_STATE_FIELD.get(c, c) for c in _FIELDS]


def _state(row: Sequence[Any]) -> ResponseState:
    kw = dict(zip(_STATE_NAMES, row[:_NCOLS], strict=True))
    kw["status"] = ResponseStatus(kw["status"])
    kw["sources"] = tuple(Passage.model_validate(p) for p in kw["sources"] or ())
    kw["finish_reason"] = FinishReason(kw["finish_reason"]) if kw["finish_reason"] else None
    kw["usage"] = Usage.model_validate(kw["usage"]) if kw["usage"] else None
    return ResponseState(**kw)


def _value(state: ResponseState, column: str) -> Any:
    v = getattr(state, _STATE_FIELD.get(column, column))
    if column == "sources":
        return Jsonb(_clean_obj([p.model_dump(mode="json") for p in v]))
    if column == "usage":
        return Jsonb(v.model_dump(mode="json")) if v is not None else None
    if column in ("question", "error_message") and v is not None:
        return _clean(v)
    if isinstance(v, ResponseStatus | FinishReason):
        return v.value
    return v


def _changed(old: ResponseState, new: ResponseState) -> tuple[str, ...]:
    return tuple(c for c in _FIELDS[4:] if getattr(old, _STATE_FIELD.get(c, c)) != getattr(new, _STATE_FIELD.get(c, c)))


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _retry_stale(fn: _F) -> _F:
    """After a database restart each pooled connection fails once (and is discarded): try again, once.

    Safe for the reads, and for the fold too: a batch whose commit was in doubt folds as duplicates.
    A database that stays unreachable is a ``TransientError``.
    """

    @functools.wraps(fn)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            try:
                return await fn(*args, **kwargs)
            except PoolTimeout:  # no connection to be had: retrying would only double the wait
                raise
            except psycopg.OperationalError as exc:
                log.info("database connection lost (%s); retrying once", _first_line(exc))
                return await fn(*args, **kwargs)
        except psycopg.OperationalError as exc:
            raise TransientError(f"the database is not reachable: {_first_line(exc)}") from exc

    return wrapper  # type: ignore[return-value]


class _Raced(Exception):
    """Another replica inserted an answer this transaction believed new: fold the batch again."""


# --- the store --------------------------------------------------------------------------------


class PostgresStore:
    """``ResponseStore`` over a psycopg pool; ``await PostgresStore.open(url)``, then ``close()``."""

    def __init__(self, pool: AsyncConnectionPool) -> None:
        self.pool = pool

    @classmethod
    async def open(
        cls, conninfo: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 5.0
    ) -> PostgresStore:
        pool = AsyncConnectionPool(
            conninfo,
            min_size=min_size,
            max_size=max_size,
            timeout=timeout_s,
            open=False,
            kwargs={"connect_timeout": 5, "autocommit": True},  # a read is one round trip; writes open a transaction
        )
        await pool.open(wait=True, timeout=timeout_s * 4)
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    @_retry_stale
    async def ping(self) -> None:
        async with self.pool.connection() as conn:
            await conn.execute("SELECT 1")

    # write path ---------------------------------------------------------------------------

    @_retry_stale
    async def fold_batch(self, events: Sequence[Event], *, now: datetime) -> list[Decision]:
        for _ in range(5):
            try:
                return await self._fold_once(events, now)
            except _Raced:
                log.info("an answer of this batch was created concurrently; folding again")
        raise RuntimeError("could not fold the batch: concurrent creation kept racing")

    async def _fold_once(self, events: Sequence[Event], now: datetime) -> list[Decision]:
        ids = sorted({e.response_id for e in events})
        async with self.pool.connection() as conn, conn.transaction():
            cur = await conn.execute(f"SELECT {_COLS} FROM responses WHERE id = ANY(%s) ORDER BY id FOR UPDATE", (ids,))
            stored = {s.response_id: s for s in map(_state, await cur.fetchall())}
            current: dict[uuid.UUID, ResponseState] = dict(stored)
            appends: dict[uuid.UUID, list[Append]] = {}
            decisions = []
            for event in events:
                try:
                    d = fold.apply(current.get(event.response_id), event, now=now)
                except Exception:  # a bug in the fold must not block the stream
                    log.exception("fold failed on %s", event.event_id)
                    d = Decision(Outcome.IGNORED, current.get(event.response_id), reason="fold raised")
                decisions.append(d)
                if d.outcome is Outcome.APPLIED and d.state is not None:
                    current[event.response_id] = d.state
                    appends.setdefault(event.response_id, []).extend(d.appends)
            chunks = []
            for rid, pieces in appends.items():
                state = current[rid]
                pieces = [a for a in pieces if a.attempt == state.attempt]  # a restart in this batch voided the rest
                if pieces:  # consecutive: each piece starts where the previous ended
                    body = _clean("".join(a.text for a in pieces))
                    chunks.append((rid, state.attempt, state.chunk_count, pieces[0].offset, body))
                    current[rid] = replace(state, chunk_count=state.chunk_count + 1)
            await self._write(conn, stored, current, chunks)
        return decisions

    async def _write(
        self,
        conn: psycopg.AsyncConnection[Any],
        stored: dict[uuid.UUID, ResponseState],
        current: dict[uuid.UUID, ResponseState],
        chunks: list[tuple[Any, ...]],
    ) -> None:
        created = [s for rid, s in current.items() if rid not in stored]
        async with conn.cursor() as cur:
            if created:
                await cur.executemany(
                    "INSERT INTO conversations (id, user_id, title, created_at, updated_at) VALUES (%s, %s, %s, %s, %s)"
                    " ON CONFLICT (user_id, id) DO UPDATE"
                    " SET updated_at = greatest(conversations.updated_at, excluded.updated_at)",
                    [(s.conversation_id, s.user_id, _title(s.question), s.created_at, s.updated_at) for s in created],
                )
                insert = (
                    f"INSERT INTO responses ({_COLS}) VALUES ({', '.join(['%s'] * _NCOLS)}) ON CONFLICT (id) DO NOTHING"
                )
                for s in created:
                    await cur.execute(insert, [_value(s, c) for c in _FIELDS])
                    if cur.rowcount != 1:
                        raise _Raced(s.response_id)
            groups: dict[tuple[str, ...], list[list[Any]]] = {}
            for rid, old in stored.items():
                new = current[rid]
                cols = _changed(old, new)
                if cols:  # only what changed: an unchanged jsonb (sources) is not written again
                    groups.setdefault(cols, []).append([_value(new, c) for c in cols] + [rid])
            for cols, rows in groups.items():
                sets = ", ".join(f"{c} = %s" for c in cols)
                await cur.executemany(f"UPDATE responses SET {sets} WHERE id = %s", rows)
            if chunks:
                await cur.executemany(
                    "INSERT INTO response_chunks (response_id, attempt, seq, start_offset, body) VALUES (%s, %s, %s, %s, %s)",
                    chunks,
                )

    # reads --------------------------------------------------------------------------------

    @_retry_stale
    async def read(self, response_id: uuid.UUID, *, since: int = 0, attempt: int | None = None) -> TextSlice | None:
        async with self.pool.connection() as conn:
            cur = await conn.execute(_READ_SQL, {"id": response_id, "since": since, "attempt": attempt})
            row = await cur.fetchone()
        if row is None:
            return None
        state = _state(row)
        eff, start, body = row[_NCOLS], row[_NCOLS + 1], row[_NCOLS + 2]
        text = body[eff - start :] if body else ""
        return TextSlice(state=state, text=text, offset=eff, restarted=eff != since)

    @_retry_stale
    async def conversation(self, conversation_id: uuid.UUID, user_id: str) -> StoredConversation | None:
        async with self.pool.connection() as conn:
            owner = await (
                await conn.execute(
                    "SELECT user_id FROM conversations WHERE id = %s AND user_id = %s", (conversation_id, user_id)
                )
            ).fetchone()
            if owner is None:
                return None
            cur = await conn.execute(
                f"SELECT {_COLS}, {_FULL_TEXT} FROM responses r WHERE r.conversation_id = %s AND r.user_id = %s"
                " ORDER BY r.created_at, r.id",
                (conversation_id, owner[0]),
            )
            rows = await cur.fetchall()
        return StoredConversation(conversation_id, owner[0], [StoredTurn(_state(r), r[_NCOLS] or "") for r in rows])

    @_retry_stale
    async def conversations(self, user_id: str, limit: int) -> list[ConversationSummary]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT c.id, c.title, c.updated_at, (SELECT count(*) FROM responses r WHERE r.conversation_id = c.id"
                " AND r.user_id = c.user_id) FROM conversations c WHERE c.user_id = %s ORDER BY c.updated_at DESC, c.id LIMIT %s",
                (user_id, limit),
            )
            rows = await cur.fetchall()
        return [ConversationSummary(conversation_id=r[0], title=r[1], updated_at=r[2], turn_count=r[3]) for r in rows]

    @_retry_stale
    async def history(
        self, conversation_id: uuid.UUID, user_id: str, before: uuid.UUID | None, limit: int
    ) -> list[Turn]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT r.question, {_FULL_TEXT} FROM responses r WHERE r.conversation_id = %(c)s AND r.user_id = %(u)s"
                " AND r.status IN ('completed', 'truncated') AND r.id IS DISTINCT FROM %(b)s::uuid"
                " AND r.created_at < coalesce((SELECT b.created_at FROM responses b WHERE b.id = %(b)s::uuid), 'infinity')"
                " ORDER BY r.created_at DESC, r.id DESC LIMIT %(n)s",
                {"c": conversation_id, "u": user_id, "b": before, "n": limit},
            )
            rows = await cur.fetchall()
        return [Turn(question=q, answer=a or "") for q, a in reversed(rows)]

    @_retry_stale
    async def stalled(self, updated_before: datetime, limit: int) -> list[ResponseState]:
        async with self.pool.connection() as conn:
            cur = await conn.execute(
                f"SELECT {_COLS} FROM responses WHERE status IN {_RUNNING} AND updated_at < %s ORDER BY updated_at LIMIT %s",
                (updated_before, limit),
            )
            return [_state(r) for r in await cur.fetchall()]

    @_retry_stale
    async def in_flight_count(self) -> int:
        async with self.pool.connection() as conn:
            row = await (await conn.execute(f"SELECT count(*) FROM responses WHERE status IN {_RUNNING}")).fetchone()
        return int(row[0]) if row else 0

    @_retry_stale
    async def delete_older_than(self, age_s: float) -> int:
        async with self.pool.connection() as conn:
            row = await (
                await conn.execute(
                    "SELECT relay_delete_responses_older_than(make_interval(secs => %s))", (float(age_s),)
                )
            ).fetchone()
        return int(row[0]) if row else 0


def _title(question: str) -> str:
    line = " ".join(question.split())
    return _clean(line if len(line) <= 80 else line[:79] + "…")


_FULL_TEXT = (
    "(SELECT string_agg(ch.body, '' ORDER BY ch.seq) FROM response_chunks ch"
    " WHERE ch.response_id = r.id AND ch.attempt = r.attempt)"
)

# The client's offset counts only inside its own attempt: from another attempt (or past the end) → from 0.
# Chunks: the last one starting at or before the offset, and every later one (a backward scan of the key).
_READ_SQL = f"""
WITH r AS (
  SELECT {_COLS},
         CASE WHEN %(since)s::int > 0 AND ((%(attempt)s::int IS NOT NULL AND %(attempt)s::int <> attempt)
                                            OR %(since)s::int > text_length)
              THEN 0 ELSE %(since)s::int END AS eff
    FROM responses WHERE id = %(id)s
)
SELECT r.*, c.start, c.body
  FROM r LEFT JOIN LATERAL (
    SELECT min(ch.start_offset) AS start, string_agg(ch.body, '' ORDER BY ch.seq) AS body
      FROM response_chunks ch
     WHERE ch.response_id = r.id AND ch.attempt = r.attempt AND r.eff < r.text_length
       AND ch.seq >= coalesce((SELECT x.seq FROM response_chunks x
                                WHERE x.response_id = r.id AND x.attempt = r.attempt AND x.start_offset <= r.eff
                                ORDER BY x.seq DESC LIMIT 1), 0)
  ) c ON true
"""
