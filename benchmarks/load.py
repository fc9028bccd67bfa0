"""Load benchmark: N concurrent simulated answers through the whole local stack.

    .venv/bin/python benchmarks/load.py --answers 50

Starts a throw-away stack (real NATS, PostgreSQL with fsync on, the four services) and a scripted
OpenAI-compatible provider in a process of its own; both read the same monotonic clock, so the time
each token left the provider is known.
Each simulated user submits one question, then polls ``GET /api/response/{id}?since=N`` as the
server's ``poll_after_ms`` advises. Prints submit and poll latency, the lag between the provider
sending a token and a poll first returning it, and what PostgreSQL wrote per answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from prometheus_client.parser import text_string_to_metric_families

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from services.devstack.ports import free_port, wait_for_port  # noqa: E402
from services.devstack.scripted_provider import Script, ScriptedProvider  # noqa: E402
from services.devstack.stack import Stack  # noqa: E402
from tests.e2e.client import follow  # noqa: E402


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(p / 100 * (len(ordered) - 1))))
    return ordered[k]


def _tokens_for(question: str, n: int) -> list[str]:
    words = ("licence", "grants", "rights", "under", "these", "conditions", "notice", "source", "copy", "work")
    return [f"{words[(i + len(question)) % len(words)]}{i % 7} " for i in range(n)]


def _part_name(proc: psutil.Process) -> str:
    cmd = " ".join(proc.cmdline())
    for name in ("ingress", "retriever", "generator", "status", "nats-server", "postgres"):
        if name in cmd:
            return name
    if "multiprocessing" in cmd:
        return "provider"
    return "clients" if proc.pid == psutil.Process().pid else proc.name()


def _cpu_seconds() -> dict[str, float]:
    me = psutil.Process()
    out: dict[str, float] = {}
    for proc in [me, *me.children(recursive=True)]:
        try:
            t = proc.cpu_times()
            out[_part_name(proc)] = out.get(_part_name(proc), 0.0) + t.user + t.system
        except psutil.Error:
            continue
    return out


def _db_counters(dsn: str) -> dict[str, int]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        commits = conn.execute("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
        wal = conn.execute("SELECT pg_current_wal_lsn() - '0/0'::pg_lsn").fetchone()
    return {"commits": int(commits[0]), "wal": int(wal[0])}


def _stored_sizes(dsn: str, ids: list[str]) -> dict[str, list[float]]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        rows = conn.execute(
            """SELECT c.response_id::text, count(*), sum(octet_length(c.body)), sum(pg_column_size(c.*))
                 FROM response_chunks c WHERE c.response_id::text = ANY(%s) GROUP BY 1""",
            (ids,),
        ).fetchall()
    return {r[0]: [float(r[1]), float(r[2]), float(r[3])] for r in rows}


def _question(body: Mapping[str, Any]) -> str:
    return next(str(m["content"]) for m in reversed(body["messages"]) if m["role"] == "user")


def script_for(question: str, args: argparse.Namespace) -> Script:
    """Each answer's script follows from its question, so both processes know it."""
    if "warm-up" in question:
        return Script(tokens=["ok"])
    found = re.search(r"bench-\d+", question)  # the prompt wraps the question in instructions and passages
    key = found.group(0) if found else "unknown"
    return Script(
        tokens=_tokens_for(key, args.tokens),
        first_token_delay_s=args.first_token_s,
        token_interval_s=1.0 / args.tokens_per_s,
    )


def _provider_process(conn: Connection, args: argparse.Namespace) -> None:
    """The provider runs apart from the clients, as a remote one would: no shared interpreter lock."""
    with ScriptedProvider() as provider:
        provider.respond_with(lambda body: script_for(_question(body), args))
        conn.send(provider.base_url)
        conn.recv()
        conn.send([(_question(c.body), c.received_at) for c in provider.calls])


def _server_latency(metrics_text: str, route: str) -> dict[float, float]:
    """Cumulative bucket counts of relay_http_request_seconds for one route."""
    out: dict[float, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        if family.name != "relay_http_request_seconds":
            continue
        for sample in family.samples:
            if sample.name.endswith("_bucket") and sample.labels.get("route") == route:
                out[float(sample.labels["le"])] = sample.value
    return out


def _bucket_pct(before: dict[float, float], after: dict[float, float], p: float) -> float:
    """The smallest bucket bound holding p % of the requests made between the two scrapes."""
    deltas = sorted((le, after[le] - before.get(le, 0.0)) for le in after)
    total = deltas[-1][1] if deltas else 0
    for le, count in deltas:
        if total and count >= total * p / 100:
            return le
    return float("nan")


async def run(args: argparse.Namespace) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=_provider_process, args=(child, args), daemon=True)
    proc.start()
    base_url = parent.recv()
    scripts: dict[str, Script] = {}
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        env = {
            "OPENAI_BASE_URL": base_url, "OPENAI_API_KEY": "bench", "OPENAI_MODEL": "scripted",
            "INGRESS_DEFAULT_MODEL": "scripted", "INGRESS_ALLOWED_MODELS": "scripted",
            "RETRIEVER_SEED_DIR": "", "GENERATOR_CONCURRENCY": str(args.answers), "LOG_LEVEL": "WARNING",
        }  # fmt: skip
        stack = Stack.isolated(Path(tmp), env=env, ui=False)
        stack.fsync = True  # count real commits
        with stack:
            dsn = stack.database_url
            status_url, reader = stack.url_of("status"), None
            if args.read_replica:  # polls go to an API-only status process; the stack's one only folds
                port = free_port()
                env_r = {**stack._env_for("status"), "STATUS_CONSUME": "false", "STATUS_PORT": str(port)}
                reader = subprocess.Popen([sys.executable, "-m", "services.status"], env=env_r)
                status_url = f"http://127.0.0.1:{port}"
                wait_for_port(port, timeout=60)
            async with (
                httpx.AsyncClient(base_url=stack.url_of("ingress"), timeout=10) as ingress,
                httpx.AsyncClient(base_url=status_url, timeout=10,
                                  limits=httpx.Limits(max_connections=200)) as status,
            ):  # fmt: skip
                # warm up every path once (connections, caches), outside the figures
                r = await ingress.post("/api/chat", json={"message": "warm-up"})
                await follow(status, r.json()["response_id"], timeout_s=60)

                before, cpu_before = _db_counters(dsn), _cpu_seconds()
                status_metrics_before = (await status.get("/metrics")).text
                ingress_metrics_before = (await ingress.get("/metrics")).text
                submit_s: list[float] = []

                async def one(k: int) -> tuple[str, str, Any]:
                    key = f"bench-{k:03d}"
                    question = f"Question {key}: what does it say?"
                    scripts[key] = script_for(question, args)
                    await asyncio.sleep(k * args.stagger_s)
                    t0 = time.perf_counter()
                    r = await ingress.post("/api/chat", json={"message": question})
                    submit_s.append(time.perf_counter() - t0)
                    assert r.status_code == 202, r.text
                    rid = r.json()["response_id"]
                    return key, rid, await follow(status, rid, timeout_s=args.timeout_s)

                t_start = time.perf_counter()
                results = await asyncio.gather(*(one(k) for k in range(args.answers)))
                wall = time.perf_counter() - t_start
                await asyncio.sleep(0.5)
                after, cpu_after = _db_counters(dsn), _cpu_seconds()
                status_metrics_after = (await status.get("/metrics")).text
                ingress_metrics_after = (await ingress.get("/metrics")).text
            if reader:
                reader.terminate()
                reader.wait(20)
            parent.send("done")
            received_at = dict(parent.recv())
            proc.join(5)

            lags, polls, statuses = [], [], []
            final_chars, final_bytes = [], []
            for key, _rid, f in results:
                statuses.append(f.last["status"])
                polls.extend(f.request_seconds)
                script = scripts[key]
                call_at = next(t for q, t in received_at.items() if key in q)
                expected = script.text()
                assert f.received == expected, f"{key}: text differs"
                final_chars.append(len(expected))
                final_bytes.append(len(expected.encode()))
                end = 0
                for i, tok in enumerate(script.tokens):
                    end += len(tok)
                    sent = call_at + script.send_at(i)
                    lags.append(f.first_seen_at[end - 1] - sent)
            sizes = _stored_sizes(dsn, [rid for _, rid, _ in results])

        poll_route, submit_route = "/api/response/{response_id}", "/api/chat"
        pb, pa = _server_latency(status_metrics_before, poll_route), _server_latency(status_metrics_after, poll_route)
        sb, sa = (
            _server_latency(ingress_metrics_before, submit_route),
            _server_latency(ingress_metrics_after, submit_route),
        )
        n = args.answers
        chunk_rows = [v[0] for v in sizes.values()]
        chunk_bytes = [v[1] for v in sizes.values()]
        chunk_disk = [v[2] for v in sizes.values()]
        return {
            "answers": n,
            "completed": statuses.count("completed"),
            "tokens_per_answer": args.tokens,
            "tokens_per_s": args.tokens_per_s,
            "wall_s": round(wall, 2),
            "submit_ms": {"p50": pct(submit_s, 50) * 1e3, "p99": pct(submit_s, 99) * 1e3},
            "poll_ms": {"p50": pct(polls, 50) * 1e3, "p99": pct(polls, 99) * 1e3, "count": len(polls)},
            "server_side_ms": {
                "submit_p50_le": _bucket_pct(sb, sa, 50) * 1e3,
                "submit_p99_le": _bucket_pct(sb, sa, 99) * 1e3,
                "poll_p50_le": _bucket_pct(pb, pa, 50) * 1e3,
                "poll_p99_le": _bucket_pct(pb, pa, 99) * 1e3,
            },
            "visibility_lag_ms": {"p50": pct(lags, 50) * 1e3, "p99": pct(lags, 99) * 1e3, "max": max(lags) * 1e3},
            "cpu_s": {k: round(cpu_after.get(k, 0) - v, 2) for k, v in sorted(cpu_before.items())},
            "db_per_answer": {
                "commits": (after["commits"] - before["commits"]) / n,
                "wal_bytes": (after["wal"] - before["wal"]) / n,
                "chunk_rows": statistics.mean(chunk_rows),
                "text_bytes_written": statistics.mean(chunk_bytes),
                "chunk_tuple_bytes": statistics.mean(chunk_disk),
                "final_text_bytes": statistics.mean(final_bytes),
                "final_text_chars": statistics.mean(final_chars),
            },
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--answers", type=int, default=50)
    ap.add_argument("--tokens", type=int, default=300, help="tokens per answer")
    ap.add_argument("--tokens-per-s", type=float, default=40.0)
    ap.add_argument("--first-token-s", type=float, default=0.5)
    ap.add_argument("--stagger-s", type=float, default=0.02, help="delay between the users' submits")
    ap.add_argument("--timeout-s", type=float, default=300.0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--read-replica", action="store_true", help="serve polls from an API-only status process")
    args = ap.parse_args()
    out = asyncio.run(run(args))
    if args.json:
        sys.stdout.write(json.dumps(out, indent=2) + "\n")
        return
    d = out["db_per_answer"]
    lines = [
        f"{out['answers']} concurrent answers ({out['completed']} completed), {out['tokens_per_answer']} tokens at "
        f"{out['tokens_per_s']:.0f} tokens/s each, wall {out['wall_s']} s",
        f"submit latency    p50 {out['submit_ms']['p50']:7.1f} ms   p99 {out['submit_ms']['p99']:7.1f} ms",
        f"poll latency      p50 {out['poll_ms']['p50']:7.1f} ms   p99 {out['poll_ms']['p99']:7.1f} ms   ({out['poll_ms']['count']} polls)",
        f"server-side (the services' own histograms, bucket bounds): submit p50 <= {out['server_side_ms']['submit_p50_le']:g} ms,"
        f" p99 <= {out['server_side_ms']['submit_p99_le']:g} ms; poll p50 <= {out['server_side_ms']['poll_p50_le']:g} ms,"
        f" p99 <= {out['server_side_ms']['poll_p99_le']:g} ms",
        f"visibility lag    p50 {out['visibility_lag_ms']['p50']:7.1f} ms   p99 {out['visibility_lag_ms']['p99']:7.1f} ms"
        f"   max {out['visibility_lag_ms']['max']:.0f} ms (token sent by provider -> first poll returning it)",
        f"per answer: {d['commits']:.1f} DB commits, {d['chunk_rows']:.1f} chunk rows, "
        f"{d['text_bytes_written']:.0f} text bytes written for {d['final_text_bytes']:.0f} bytes of final text "
        f"({d['text_bytes_written'] / d['final_text_bytes']:.2f}x), chunk tuples {d['chunk_tuple_bytes']:.0f} B "
        f"({d['chunk_tuple_bytes'] / d['final_text_bytes']:.2f}x), WAL {d['wal_bytes']:.0f} B "
        f"({d['wal_bytes'] / d['final_text_bytes']:.1f}x)",
    ]
    lines.append("CPU seconds during the run: " + ", ".join(f"{k} {v:.1f}" for k, v in out["cpu_s"].items()))
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
