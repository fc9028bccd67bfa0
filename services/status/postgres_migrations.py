"""Start-up of the database: wait for PostgreSQL (bounded), apply ``supabase/migrations/*.sql`` once.

The same files are what ``supabase db push`` applies to a Supabase project. Applied names are kept
in ``relay_schema_migrations``; an advisory lock lets replicas that start together take turns.
"""

from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import psycopg

__all__ = ["MIGRATIONS_DIR", "apply_migrations", "wait_for_database"]

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parents[2] / "supabase" / "migrations"
_MIGRATION_LOCK = 0x72656C6179  # "relay": one advisory lock id for every status replica


async def wait_for_database(conninfo: str, *, timeout_s: float = 60.0) -> None:
    """Wait until PostgreSQL accepts connections (bounded), raising with the last error."""
    deadline = time.monotonic() + timeout_s
    delay, last = 0.2, None
    while time.monotonic() < deadline:
        try:
            conn = await psycopg.AsyncConnection.connect(conninfo, connect_timeout=5)
            await conn.close()
            return
        except psycopg.OperationalError as exc:
            last = exc
            log.info("waiting for PostgreSQL: %s", str(exc).strip().splitlines()[0] if str(exc) else exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
    raise RuntimeError(f"PostgreSQL not reachable after {timeout_s:.0f} s (check DATABASE_URL): {last}")


async def apply_migrations(conninfo: str, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply ``*.sql`` files not yet recorded in ``relay_schema_migrations``, in name order.

    Each file runs in its own transaction; an advisory lock makes concurrent starts wait for each other.
    Returns the names applied now.
    """
    files = sorted(directory.glob("*.sql"))
    if not files:
        raise FileNotFoundError(f"no migrations in {directory}")
    applied: list[str] = []
    async with await psycopg.AsyncConnection.connect(conninfo, autocommit=True) as conn:
        await conn.execute("SELECT pg_advisory_lock(%s)", (_MIGRATION_LOCK,))
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS relay_schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r[0] for r in await (await conn.execute("SELECT version FROM relay_schema_migrations")).fetchall()}
            for path in files:
                if path.name in done:
                    continue
                async with conn.transaction():
                    await conn.execute(path.read_text(encoding="utf-8"))  # type: ignore[arg-type]
                    await conn.execute("INSERT INTO relay_schema_migrations (version) VALUES (%s)", (path.name,))
                log.info("applied migration %s", path.name)
                applied.append(path.name)
        finally:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (_MIGRATION_LOCK,))
    return applied
