"""``relay follow``, ``cancel``, ``ingest`` and ``up``, and what the CLI says when a service is not there."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import httpx
from cli_stream import stored_events
from cli_support import Frame, StatusScript, run_cli, serving, start_cli, status_stub
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from nats.js import JetStreamContext

from services.core.contracts import CancelRequested, subject_for_cancel
from services.devstack.ports import free_port


async def test_follow_resumes_an_answer_by_id(status_service, env_for, workdir) -> None:
    rid = str(uuid.uuid4())
    script = StatusScript(
        [Frame("generating", "Resumed", attempt=1), Frame("completed", "Resumed text.", attempt=1)], known={rid}
    )
    async with status_service(script) as status_url:
        code, out, err = await run_cli("follow", rid, env=env_for(status=status_url), cwd=workdir)

    assert code == 0, err
    assert out.splitlines()[0] == "Resumed text."
    assert "Status: completed" in out


async def test_follow_of_an_unknown_id_says_so_and_exits_1(status_service, env_for, workdir) -> None:
    script = StatusScript([Frame("queued")], known=set())
    rid = str(uuid.uuid4())
    async with status_service(script) as status_url:
        code, _, err = await run_cli("follow", rid, env=env_for(status=status_url), cwd=workdir)

    assert code == 1
    assert f"the status service refused the request (404 not_found): no response {rid}" in err


async def test_follow_rides_out_a_status_service_outage(status_service, env_for, workdir) -> None:
    rid = str(uuid.uuid4())
    port = free_port()
    first = StatusScript([Frame("generating", "Before the outage", attempt=1)])
    second = StatusScript([Frame("completed", "Before the outage, and after.", attempt=1)])
    async with serving(status_stub(first), port=port) as status_url:
        cli = await start_cli("follow", rid, env=env_for(status=status_url), cwd=workdir)
        await cli.read_until("Before the outage")
    # the status service is down now: the CLI keeps trying
    for _ in range(300):
        if "Reconnecting to the status service" in (await _peek_err(cli)):
            break
    async with serving(status_stub(second), port=port):
        code = await cli.finish()

    assert code == 0, cli.err
    assert cli.out.splitlines()[0] == "Before the outage, and after."
    assert "Reconnecting to the status service at" in cli.err and "Reconnected." in cli.err
    assert second.polls[0][1:] == (len("Before the outage"), 1)  # resumed from its offset


async def _peek_err(cli) -> str:
    assert cli.proc.stderr is not None
    try:
        chunk = await asyncio.wait_for(cli.proc.stderr.read(4096), 0.1)
    except TimeoutError:
        return cli.err
    cli.err += chunk.decode()
    return cli.err


async def test_follow_retries_a_failing_status_service(status_service, env_for, workdir) -> None:
    script = StatusScript([Frame("completed", "Fine.", attempt=1)], failures_left=2)
    async with status_service(script) as status_url:
        code, out, err = await run_cli("follow", str(uuid.uuid4()), env=env_for(status=status_url), cwd=workdir)

    assert code == 0
    assert err.count("The status service answered 503; retrying") == 2
    assert out.startswith("Fine.\n")


async def test_unreachable_ingress_names_the_url_and_how_to_start_the_stack(env_for, workdir) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, out, err = await run_cli("ask", "hello?", env=env_for(url), cwd=workdir)

    assert code == 3
    assert out == ""
    assert f"cannot reach the ingress service at {url} (connection refused)" in err
    assert "Start the local stack with `relay up`, or set RELAY_INGRESS_URL" in err
    assert "Traceback" not in err


async def test_unreachable_status_service_gives_up_after_the_reconnect_window(
    ingress_url, env_for, workdir, js
) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    code, _, err = await run_cli("ask", "q", env=env_for(ingress_url, url, RELAY_RECONNECT_FOR_S="1"), cwd=workdir)

    assert code == 3
    assert f"cannot reach the status service at {url}" in err
    assert "Resume with: relay follow" in err


async def test_cancel_publishes_the_cancel_and_prints_the_answer(
    ingress_url, env_for, workdir, js: JetStreamContext
) -> None:
    async with httpx.AsyncClient(base_url=ingress_url) as http:
        r = await http.post("/api/chat", json={"message": "long one"}, headers={"X-User-Id": "alice"})
    rid = r.json()["response_id"]

    code, out, err = await run_cli("--user", "alice", "cancel", rid, env=env_for(ingress_url), cwd=workdir)
    again, out2, _ = await run_cli("cancel", rid, env=env_for(ingress_url, RELAY_USER_ID="alice"), cwd=workdir)

    assert code == again == 0, err
    assert out == f"{rid}: cancel requested (status queued)\n"
    assert out2 == f"{rid}: cancel already requested (status queued)\n"
    events = await stored_events(js, subject_for_cancel(rid))
    assert len(events) == 1 and isinstance(events[0], CancelRequested) and events[0].user_id == "alice"


async def test_cancel_of_someone_elses_answer_is_not_found(ingress_url, env_for, workdir, js) -> None:
    async with httpx.AsyncClient(base_url=ingress_url) as http:
        rid = (await http.post("/api/chat", json={"message": "mine"}, headers={"X-User-Id": "alice"})).json()[
            "response_id"
        ]

    code, _, err = await run_cli("cancel", rid, env=env_for(ingress_url, RELAY_USER_ID="mallory"), cwd=workdir)

    assert code == 1
    assert f"(404 not_found): no response {rid}" in err


def _document_api(received: list[dict[str, Any]]) -> FastAPI:
    app = FastAPI()

    @app.post("/api/documents")
    async def post(body: dict[str, Any]) -> JSONResponse:
        received.extend(body["documents"])
        if any(d["source"] == "bad.md" for d in body["documents"]):
            return JSONResponse(
                {"error": {"code": "invalid_document", "message": "bad.md: the document has no text"}}, 400
            )
        return JSONResponse(
            {"ingested": [{"source": d["source"], "chunks": len(d["text"]) // 10 + 1} for d in body["documents"]]}
        )

    return app


def _corpus(root: Path) -> Path:
    docs = root / "docs"
    (docs / "nested").mkdir(parents=True)
    (docs / "a.txt").write_text("Alpha " * 10)
    (docs / "nested" / "b.md").write_text("# Beta\n\nSome text.")
    (docs / "c.pdf").write_bytes(b"%PDF-1.4")
    (docs / ".hidden.md").write_text("secret")
    return docs


async def test_ingest_sends_each_text_file_to_the_document_api_and_skips_the_rest(workdir, tmp_path, env_for) -> None:
    docs = _corpus(tmp_path)
    single = tmp_path / "single.md"
    single.write_text("one more")
    received: list[dict[str, Any]] = []
    async with serving(_document_api(received)) as url:
        code, out, err = await run_cli(
            "ingest",
            str(docs),
            str(single),
            str(tmp_path / "missing.txt"),
            env=env_for(RELAY_RETRIEVER_URL=url),
            cwd=workdir,
        )

    assert code == 0, err
    assert out.splitlines() == ["a.txt: 7 chunks", "b.md: 2 chunks", "single.md: 1 chunks"]
    assert [d["source"] for d in received] == ["a.txt", "b.md", "single.md"]
    assert received[0]["text"] == "Alpha " * 10
    assert f"skipped {docs / 'c.pdf'}: only .txt and .md files are ingested" in err
    assert f"skipped {tmp_path / 'missing.txt'}: no such file or folder" in err
    assert ".hidden.md" not in out + err


async def test_ingest_reports_a_refused_document_and_exits_1(workdir, tmp_path, env_for) -> None:
    (tmp_path / "bad.md").write_text(" ")
    (tmp_path / "good.md").write_text("fine")
    async with serving(_document_api([])) as url:
        code, out, err = await run_cli(
            "ingest",
            str(tmp_path / "bad.md"),
            str(tmp_path / "good.md"),
            env=env_for(RELAY_RETRIEVER_URL=url),
            cwd=workdir,
        )

    assert code == 1
    assert out == "good.md: 1 chunks\n"
    assert "failed" in err and "bad.md: the document has no text" in err


async def test_ingest_with_only_unsupported_files_exits_2(workdir, tmp_path, env_for) -> None:
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    code, _, err = await run_cli("ingest", str(tmp_path / "x.pdf"), env=env_for(), cwd=workdir)

    assert code == 2
    assert "nothing to ingest" in err


async def test_up_hands_over_to_the_local_stack_launcher(env_for, workdir) -> None:
    code, out, _ = await run_cli("up", "--help", env=env_for(), cwd=workdir)

    assert code == 0
    assert out.startswith("usage: relay up")


async def test_ingest_without_a_retriever_goes_straight_into_the_vector_store(workdir, tmp_path, env_for) -> None:
    from qdrant_client import QdrantClient

    from services.retriever.settings import RetrieverSettings

    doc = tmp_path / "notes.md"
    doc.write_text("# Licences\n\nThe MPL is a weak copyleft licence.\n\n## Patents\n\nIt grants a patent licence.\n")
    qdrant = tmp_path / "qdrant"
    env = env_for(RELAY_RETRIEVER_URL=f"http://127.0.0.1:{free_port()}", RETRIEVER_QDRANT_PATH=str(qdrant))
    code, out, err = await run_cli("ingest", str(doc), env=env, cwd=workdir, timeout=180)

    assert code == 0, err
    assert "is not reachable: ingesting directly into the vector store" in err
    assert f"into Qdrant at the folder {qdrant}" in err
    (line,) = out.splitlines()
    chunks = int(line.removeprefix("notes.md: ").removesuffix(" chunks"))
    store = QdrantClient(path=str(qdrant))
    try:
        points, _ = store.scroll(RetrieverSettings(_env_file=None).collection, limit=100)  # type: ignore[call-arg]
    finally:
        store.close()
    assert chunks >= 1 and len(points) == chunks
    assert {p.payload["source"] for p in points if p.payload} == {"notes.md"}
