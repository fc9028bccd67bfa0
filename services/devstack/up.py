"""``relay up``: start the whole stack, print where everything answers, stop it all on Ctrl-C or SIGTERM.

Ctrl-C, SIGTERM and SIGHUP (a closed terminal) all stop the parts in reverse order; a part that
dies on its own stops the rest too, with its last log lines. Exit codes: 0 stopped on request,
1 a part died, 2 could not start (the message says why: port taken, binary missing, not ready).
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType

from services.devstack.model_server import ModelServerError
from services.devstack.ports import PortTakenError
from services.devstack.settings import LOCAL_MODEL_ALIAS
from services.devstack.stack import SERVICES, Stack, StackError
from services.devstack.supervisor import PartFailedError

__all__ = ["banner", "run"]


def banner(stack: Stack) -> str:
    u, lines = stack.urls, ["", "llm-relay is up:"]
    rows = [("chat", u.get("chat")), ("ingress API", u.get("ingress")), ("API docs", u.get("docs")),
            ("status API", u.get("status") and u["status"] + "  (docs: " + u["status"] + "/docs)"),
            ("documents", u.get("retriever") and u["retriever"] + "/api/documents  (docs: " + u["retriever"] + "/docs)"),
            ("model", u["model"] + (f"  ({LOCAL_MODEL_ALIAS}, offline)" if stack.with_model else "")),
            ("NATS", u["nats"]), ("PostgreSQL", u["database"])]  # fmt: skip
    rows += [("metrics" if i == 0 else "", f"{v}  ({k.removeprefix('metrics_')})")
             for i, (k, v) in enumerate((k, v) for k, v in u.items() if k.startswith("metrics_"))]  # fmt: skip
    lines += [f"  {label:<12} {value}" for label, value in rows if value]
    # the CLI's defaults are the default ports; on others it needs to be told where the services are
    cli_env = {"RELAY_INGRESS_URL": ("ingress", "http://127.0.0.1:8701"), "RELAY_STATUS_URL": ("status", "http://127.0.0.1:8702"),
               "RELAY_RETRIEVER_URL": ("retriever", "http://127.0.0.1:8703")}  # fmt: skip
    prefix = "".join(f"{var}={u[name]} " for var, (name, default) in cli_env.items() if u.get(name, default) != default)
    lines += [f"  logs         {stack.state_dir / 'logs'}", "",
              f'  try:  {prefix}.venv/bin/relay ask "Can I use the Apache-2.0 licensor\'s trademarks?"', "Ctrl-C stops everything.", ""]  # fmt: skip
    return "\n".join(lines)


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signum)


def run(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="relay up", description="Start the whole llm-relay stack locally.")
    parser.add_argument("--no-ui", action="store_true", help="do not start the Streamlit chat")
    parser.add_argument(
        "--services",
        default=",".join(SERVICES),
        help="comma-separated services to run ('none': only NATS, PostgreSQL, model)",
    )
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.services.split(",") if n.strip() and n.strip() != "none"]
    if unknown := set(names) - set(SERVICES):
        parser.error(f"unknown service(s) {', '.join(sorted(unknown))}; choose from {', '.join(SERVICES)}")
    stack = Stack(ui=not args.no_ui, services=[n for n in SERVICES if n in names], echo=sys.stdout)
    say, code = stack.supervisor.out.system, 0
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _raise_stop)
    try:
        stack.start()
        sys.stdout.write(banner(stack) + "\n")
        sys.stdout.flush()
        while (dead := stack.supervisor.exited()) is None:
            time.sleep(0.5)
        say(
            f"{dead.name} exited (rc={dead.proc.returncode if dead.proc else '?'}); stopping everything. Its last lines:\n{dead.last_lines()}"
        )
        code = 1
    except _Stop as stop:
        say(f"{stop}: stopping")
    except (PortTakenError, FileNotFoundError, ModelServerError, PartFailedError, StackError, OSError) as exc:
        sys.stderr.write(f"relay up: {exc}\n")
        code = 2
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, lambda *_: say("already stopping; wait a moment"))
        stack.stop()
    return code
