"""``python -m services.devstack.scripted_provider --port N``: echo answers for manual runs and load benchmarks."""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
from collections.abc import Mapping, Sequence
from typing import Any

from services.devstack.scripted_provider.script import Script, echo_script
from services.devstack.scripted_provider.server import ScriptedProvider

log = logging.getLogger("services.devstack.scripted_provider")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Scriptable OpenAI-compatible server (echo answers by default).")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8705)
    parser.add_argument("--tokens-per-s", type=float, default=50.0)
    parser.add_argument("--first-token-ms", type=float, default=100.0)
    parser.add_argument("--words", type=int, default=40)
    parser.add_argument("--model", action="append", default=None, help="model ids listed by /v1/models (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    def default(body: Mapping[str, Any]) -> Script:
        return echo_script(body, tokens_per_s=args.tokens_per_s, words=args.words, first_token_ms=args.first_token_ms)

    provider = ScriptedProvider(host=args.host, port=args.port, models=args.model or ["scripted"], default=default)

    async def run() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        task = asyncio.create_task(provider.serve(stop))
        await asyncio.sleep(0.1)
        if not task.done():
            log.info("scripted provider on %s (%.0f tokens/s)", provider.base_url, args.tokens_per_s)
        await task

    try:
        asyncio.run(run())
    except OSError as exc:  # the port is taken, the host cannot be bound
        log.error("cannot listen on %s:%d: %s", args.host, args.port, exc)
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
