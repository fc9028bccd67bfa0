"""``relay``: ask, follow, cancel, ingest and start the local stack, all through the HTTP API.

Exit codes: 0 the answer completed (or truncated at the model's limit); 1 it failed, was filtered or
cancelled, or the response is unknown; 2 the request was refused (bad input); 3 a service is not
reachable; 130 interrupted (the answer goes on: ``relay follow ID``).
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from collections.abc import Sequence
from typing import TextIO

from services.cli.client import CliError, RelayClient
from services.cli.follow import Followed, follow
from services.cli.ingest import ingest
from services.cli.render import SUCCESS, format_sources, format_status, format_timings
from services.cli.settings import CliSettings

__all__ = ["main", "build_parser"]

EXIT_INTERRUPTED = 130


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="relay",
        description="Command-line client of llm-relay: ask questions and watch the grounded answer stream in.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--ingress-url", help="default: RELAY_INGRESS_URL or http://127.0.0.1:8701")
    parser.add_argument("--status-url", help="default: RELAY_STATUS_URL or http://127.0.0.1:8702")
    parser.add_argument("--user", help="X-User-Id to act as (default: RELAY_USER_ID, else anonymous)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    ask = sub.add_parser("ask", help="ask a question and follow the answer")
    ask.add_argument("question")
    ask.add_argument("--conversation", metavar="ID", help="continue this conversation")
    ask.add_argument("--model", metavar="M", help="one of the models the ingress allows")
    ask.add_argument("--json", action="store_true", help="print one JSON object when the answer ends, nothing before")

    fol = sub.add_parser("follow", help="follow an answer that is already running (or ended)")
    fol.add_argument("response_id", metavar="ID")
    fol.add_argument("--json", action="store_true", help="print one JSON object when the answer ends")

    can = sub.add_parser("cancel", help="stop an answer (idempotent)")
    can.add_argument("response_id", metavar="ID")

    ing = sub.add_parser("ingest", help="load .txt/.md files or folders into the document store")
    ing.add_argument("paths", nargs="+", metavar="PATH")
    ing.add_argument("--retriever-url", help="default: RELAY_RETRIEVER_URL or http://127.0.0.1:8703")

    sub.add_parser("up", help="start the whole local stack (nats, PostgreSQL, services, model, chat)", add_help=False)
    return parser


def _as_json(followed: Followed) -> str:
    view = followed.view.model_dump(
        mode="json", exclude={"text", "offset", "next_offset", "restarted", "poll_after_ms"}
    )
    return json.dumps({**view, "text": followed.text}, ensure_ascii=False)


def _report(followed: Followed, *, as_json: bool, out: TextIO) -> int:
    view = followed.view
    if as_json:
        out.write(_as_json(followed) + "\n")
    else:
        out.write("\n")
        for line in format_sources(view.sources):
            out.write(line + "\n")
        out.write(
            format_timings(view, client_first_text_s=followed.first_text_s, client_total_s=followed.total_s) + "\n"
        )
        out.write(format_status(view) + "\n")
    out.flush()
    return 0 if view.status in SUCCESS else 1


def _follow(
    client: RelayClient, rid: str, settings: CliSettings, *, as_json: bool, grace_s: float, out: TextIO, err: TextIO
) -> int:
    try:
        followed = follow(
            client,
            rid,
            out=io.StringIO() if as_json else out,
            notes=err,
            reconnect_for_s=settings.reconnect_for_s,
            not_found_grace_s=grace_s,
            show_progress=err.isatty(),
        )
    except KeyboardInterrupt:
        err.write(f"\nStopped following {rid}; the answer goes on. Resume with: relay follow {rid}\n")
        return EXIT_INTERRUPTED
    except CliError as exc:
        err.write(f"\nerror: {exc}\nResume with: relay follow {rid}\n")
        return exc.exit_code
    return _report(followed, as_json=as_json, out=out)


def _up(argv: Sequence[str]) -> int:
    try:
        from services.devstack.stack import main as stack_main  # the local stack launcher (heavy imports)
    except ImportError as exc:
        sys.stderr.write(f"error: the local stack launcher is not available ({exc})\n")
        return 1
    return int(stack_main(list(argv)) or 0)


def run(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    args_list = list(sys.argv[1:] if argv is None else argv)
    if args_list[:1] == ["up"]:
        return _up(args_list[1:])
    args = build_parser().parse_args(args_list)
    settings = CliSettings()
    if args.command == "ingest":
        try:
            return ingest(
                args.paths,
                retriever_url=args.retriever_url or settings.retriever_url,
                timeout_s=settings.ingest_timeout_s,
                out=out,
                notes=err,
            )
        except KeyboardInterrupt:
            err.write("\ninterrupted: the files already reported are in; run it again for the rest\n")
            return EXIT_INTERRUPTED
    client = RelayClient(
        ingress_url=args.ingress_url or settings.ingress_url,
        status_url=args.status_url or settings.status_url,
        user_id=args.user or settings.user_id,
    )
    try:
        if args.command == "ask":
            try:
                accepted = client.submit(args.question, conversation_id=args.conversation, model=args.model)
            except KeyboardInterrupt:
                err.write("\ninterrupted before the question was accepted\n")
                return EXIT_INTERRUPTED
            rid = str(accepted.response_id)
            if not args.json:
                err.write(f"response {rid} (conversation {accepted.conversation_id})\n")
            return _follow(client, rid, settings, as_json=args.json, grace_s=5.0, out=out, err=err)
        if args.command == "follow":
            return _follow(client, args.response_id, settings, as_json=args.json, grace_s=0.0, out=out, err=err)
        if args.command == "cancel":
            result = client.cancel(args.response_id)
            out.write(f"{result.response_id}: {result.message} (status {result.status.value})\n")
            return 0
    except CliError as exc:
        err.write(f"error: {exc}\n")
        return exc.exit_code
    finally:
        client.close()
    return 2  # pragma: no cover  (argparse requires a command)


def main() -> None:
    sys.exit(run())


if __name__ == "__main__":
    main()
