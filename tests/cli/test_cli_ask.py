"""``relay ask`` through a real ingress (real NATS) while a scripted status service serves the answer."""

from __future__ import annotations

import asyncio
import json
import signal

from cli_stream import stored_requests
from cli_support import Frame, StatusScript, run_cli, start_cli
from nats.js import JetStreamContext

SOURCES = [
    {"text": "11. Patents. ...", "source": "GPL-3.txt", "position": 41, "heading": "11. Patents", "score": 0.8123},
    {"text": "Grant of Patent License", "source": "Apache-2.0.txt", "position": 7, "heading": None, "score": 0.5},
]
DONE = {
    "sources": SOURCES,
    "model": "smollm2-135m-instruct",
    "model_ttft_ms": 210.0,
    "user_ttft_ms": 480.0,
    "total_ms": 3900.0,
    "finish_reason": "stop",
    "usage": {"prompt_tokens": 300, "completion_tokens": 42, "total_tokens": 342},
}


async def test_ask_streams_the_answer_then_prints_sources_timings_and_status(
    ingress_url, status_service, env_for, workdir, js: JetStreamContext
) -> None:
    script = StatusScript(
        [
            Frame("queued"),
            Frame("retrieving"),
            Frame("generating", "Contributors grant", attempt=1),
            Frame("generating", "Contributors grant a patent license", attempt=1),
            Frame("completed", "Contributors grant a patent license.", attempt=1, extra=DONE),
        ],
        auto=False,
    )
    async with status_service(script) as status_url:
        cli = await start_cli(
            "ask", "What about patents?", env=env_for(ingress_url, status_url, RELAY_USER_ID="alice"), cwd=workdir
        )
        for seen in (1, 2):  # queued, then retrieving: nothing to print yet
            await _polled(script, seen)
            script.advance()
        await cli.read_until("Contributors grant")  # printed before the answer is complete
        assert "patent license" not in cli.out
        script.advance()
        await cli.read_until("a patent license")
        script.advance()
        code = await cli.finish()

    assert code == 0, cli.err
    lines = cli.out.splitlines()
    assert lines[0] == "Contributors grant a patent license."
    assert cli.out.count("Contributors grant") == 1  # each piece printed once
    assert "Sources:" in lines
    assert "  [1] GPL-3.txt — § 11. Patents, chunk 41 — score 0.812" in lines
    assert "  [2] Apache-2.0.txt — chunk 7 — score 0.500" in lines
    timings = next(line for line in lines if line.startswith("Timings:"))
    assert timings.startswith(
        "Timings: model TTFT 0.21 s · user-perceived TTFT 0.48 s · total 3.90 s (here: first text after"
    )
    assert lines[-1] == "Status: completed by smollm2-135m-instruct, 42 tokens"

    (request,) = await stored_requests(js)
    assert request.message == "What about patents?" and request.user_id == "alice"
    assert request.idempotency_key and request.idempotency_key.startswith("cli-")
    assert f"response {request.response_id}" in cli.err
    polled = {rid for rid, _, _ in script.polls}
    assert polled == {str(request.response_id)}
    cursors = [(since, attempt) for _, since, attempt in script.polls]
    assert cursors[0] == (0, None)
    assert (len("Contributors grant"), 1) in cursors  # the client asks only for what it has not seen


async def _polled(script: StatusScript, times: int) -> None:
    for _ in range(1500):  # bounded: 30 s
        if len(script.polls) >= times:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"the CLI polled {len(script.polls)} times, expected {times}")


async def test_ask_redraws_the_answer_when_it_restarts_under_a_new_attempt(
    ingress_url, status_service, env_for, workdir, js: JetStreamContext
) -> None:
    script = StatusScript(
        [
            Frame("generating", "A first try that", attempt=1),
            Frame("generating", "A first try that died", attempt=1),
            Frame("generating", "Second", attempt=2),
            Frame("completed", "Second attempt, whole.", attempt=2, extra=DONE),
        ]
    )
    async with status_service(script) as status_url:
        code, out, err = await run_cli("ask", "q", env=env_for(ingress_url, status_url), cwd=workdir)

    assert code == 0, err
    before, marker, after = out.partition("[the answer restarted (attempt 2); here it is again from the start]")
    assert marker
    assert before.strip() == "A first try that died"
    assert after.strip().splitlines()[0] == "Second attempt, whole."
    # after the restart the client asked from the new attempt's start, not from its old offset
    assert [(s, a) for _, s, a in script.polls][2:] == [(len("A first try that died"), 1), (len("Second"), 2)]


async def test_failed_answer_prints_its_cause_and_exits_non_zero(
    ingress_url, status_service, env_for, workdir, js
) -> None:
    error = {"code": "provider_disconnected", "message": "the model server closed the stream before finishing"}
    script = StatusScript(
        [Frame("generating", "Partial", attempt=1), Frame("failed", "Partial", attempt=1, extra={"error": error})]
    )
    async with status_service(script) as status_url:
        code, out, err = await run_cli("ask", "q", env=env_for(ingress_url, status_url), cwd=workdir)

    assert code == 1
    assert out.splitlines()[0] == "Partial"
    assert out.splitlines()[-1] == (
        "Status: failed (after 7 characters, kept above) — provider_disconnected: the model server closed the stream before finishing"
    )


async def test_truncated_answer_says_so_and_still_succeeds(ingress_url, status_service, env_for, workdir, js) -> None:
    script = StatusScript([Frame("truncated", "Cut here", attempt=1, extra={"finish_reason": "length"})])
    async with status_service(script) as status_url:
        code, out, _ = await run_cli("ask", "q", env=env_for(ingress_url, status_url), cwd=workdir)

    assert code == 0
    assert "Status: truncated — the model stopped at its length limit" in out


async def test_ask_json_prints_one_object_with_the_whole_text(
    ingress_url, status_service, env_for, workdir, js
) -> None:
    script = StatusScript(
        [Frame("generating", "Hel", attempt=1), Frame("completed", "Hello 🙂 world", attempt=1, extra=DONE)]
    )
    async with status_service(script) as status_url:
        code, out, err = await run_cli(
            "ask", "q", "--json", "--model", "smollm2-135m-instruct", env=env_for(ingress_url, status_url), cwd=workdir
        )

    assert code == 0, err
    (line,) = out.splitlines()
    body = json.loads(line)
    assert body["text"] == "Hello 🙂 world"
    assert body["status"] == "completed"
    assert [s["source"] for s in body["sources"]] == ["GPL-3.txt", "Apache-2.0.txt"]
    assert body["user_ttft_ms"] == 480.0
    assert "next_offset" not in body and "poll_after_ms" not in body


async def test_ask_with_an_empty_question_shows_the_ingress_message_and_exits_2(
    ingress_url, env_for, workdir, js
) -> None:
    code, out, err = await run_cli("ask", "   ", env=env_for(ingress_url), cwd=workdir)

    assert code == 2
    assert "message must not be empty" in err
    assert await stored_requests(js) == []


async def test_ask_with_an_unknown_model_lists_the_allowed_ones(ingress_url, env_for, workdir, js) -> None:
    code, _, err = await run_cli("ask", "q", "--model", "gpt-99", env=env_for(ingress_url), cwd=workdir)

    assert code == 2
    assert "unknown model 'gpt-99'; allowed models: smollm2-135m-instruct" in err


async def test_ctrl_c_stops_following_and_says_how_to_resume(ingress_url, status_service, env_for, workdir, js) -> None:
    script = StatusScript([Frame("generating", "still going", attempt=1)])  # never ends
    async with status_service(script) as status_url:
        cli = await start_cli("ask", "q", env=env_for(ingress_url, status_url), cwd=workdir)
        await cli.read_until("still going")
        cli.proc.send_signal(signal.SIGINT)
        code = await cli.finish()

    (request,) = await stored_requests(js)
    assert code == 130
    assert (
        f"Stopped following {request.response_id}; the answer goes on. Resume with: relay follow {request.response_id}"
        in cli.err
    )
    assert "Traceback" not in cli.err
