"""The scripted provider's server: a real HTTP server on loopback in a background thread."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from services.devstack.scripted_provider.script import Call, Script, echo_script, finish_chunk, text_chunk, usage_chunk
from services.devstack.scripted_provider.wire import Exchange, Gone, embed, http_head, parse_head, read_body, sse

__all__ = ["ScriptedProvider"]


class ScriptedProvider:
    """``with ScriptedProvider() as p: p.base_url; p.script(...); p.calls`` — usable from sync and async code."""

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        models: Sequence[str] = ("scripted",),
        default: Callable[[Mapping[str, Any]], Script] | None = None,
        embedding_dim: int = 384,
    ) -> None:
        self.host, self.port, self.models, self.embedding_dim = host, port, list(models), embedding_dim
        self._default = default or echo_script
        self._queue: list[Script] = []
        self._calls: list[Call] = []
        self._lock = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._conns: set[asyncio.StreamWriter] = set()

    # --- scripting and records -------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    def script(self, *scripts: Script) -> None:
        """Answer the next calls with these scripts in order; the last one repeats."""
        with self._lock:
            self._queue = list(scripts)

    def respond_with(self, fn: Callable[[Mapping[str, Any]], Script]) -> None:
        """Choose each answer from the request body once the queue is empty (per-question scripts)."""
        with self._lock:
            self._queue, self._default = [], fn

    def reset(self) -> None:
        with self._lock:
            self._queue, self._default, self._calls = [], echo_script, []

    @property
    def calls(self) -> list[Call]:
        """Chat-completion calls so far (embeddings and model lists are not counted)."""
        with self._lock:
            return [c for c in self._calls if c.path.endswith("/chat/completions")]

    @property
    def all_calls(self) -> list[Call]:
        with self._lock:
            return list(self._calls)

    def wait_for(self, predicate: Callable[[list[Call]], bool], timeout: float = 10.0) -> list[Call]:
        """Block until ``predicate(calls)`` holds (sync tests); raises TimeoutError."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not predicate([c for c in self._calls if c.path.endswith("/chat/completions")]):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"provider condition not met in {timeout} s; calls: {self._calls}")
                self._lock.wait(min(left, 0.05))
        return self.calls

    async def until(self, predicate: Callable[[list[Call]], bool], timeout: float = 10.0) -> list[Call]:
        """``wait_for`` for async tests (does not block the event loop)."""
        deadline = time.monotonic() + timeout
        while not predicate(self.calls):
            if time.monotonic() > deadline:
                raise TimeoutError(f"provider condition not met in {timeout} s; calls: {self.calls}")
            await asyncio.sleep(0.02)
        return self.calls

    def _next_script(self, body: Mapping[str, Any]) -> Script:
        with self._lock:
            if self._queue:
                return self._queue.pop(0) if len(self._queue) > 1 else self._queue[0]
            default = self._default
        return default(body)

    def _touch(self) -> None:
        with self._lock:
            self._lock.notify_all()

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> ScriptedProvider:
        self._thread = threading.Thread(target=self._run, name="scripted-provider", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error:
            raise RuntimeError(f"scripted provider did not start: {self._error}")
        return self

    def stop(self) -> None:
        if self._loop and self._stop and self._thread:
            self._loop.call_soon_threadsafe(self._stop.set)
            self._thread.join(10)
        self._thread = None

    def __enter__(self) -> ScriptedProvider:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            asyncio.run(self.serve())
        except BaseException as exc:  # surfaced by start()
            self._error = exc
            self._ready.set()

    async def serve(self, stop: asyncio.Event | None = None) -> None:
        """Serve until ``stop`` is set (or ``stop()`` is called); runs in the caller's loop."""
        self._loop, self._stop = asyncio.get_running_loop(), stop or asyncio.Event()
        server = await asyncio.start_server(self._connection, self.host, self.port, limit=1 << 22)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stop.wait()
            server.close()
            for w in list(self._conns):  # idle keep-alive readers see EOF, streams see the stop
                w.transport.abort()
            deadline = time.monotonic() + 5
            while self._conns and time.monotonic() < deadline:
                await asyncio.sleep(0.01)

    # --- HTTP ------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._conns.add(writer)
        with contextlib.suppress(Exception):
            writer.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                method, path, headers = parse_head(head)
                body = await read_body(reader, headers)
                if not await self._dispatch(method, path, headers, body, reader, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError, Gone):
            return
        finally:
            self._conns.discard(writer)
            with contextlib.suppress(Exception):
                writer.close()

    async def _json(
        self, writer: asyncio.StreamWriter, status: int, obj: Any, extra: Mapping[str, str] | None = None
    ) -> None:
        data = json.dumps(obj, ensure_ascii=False).encode()
        head = {"content-type": "application/json", "content-length": str(len(data)), **(extra or {})}
        writer.write(http_head(status, head) + data)
        await writer.drain()

    async def _dispatch(
        self,
        method: str,
        path: str,
        headers: dict[str, str],
        raw: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        try:
            body = json.loads(raw) if raw else {}
        except ValueError:
            body = {}
        with self._lock:
            call = Call(
                len(self._calls), method, path, body if isinstance(body, dict) else {}, headers, time.monotonic()
            )
            self._calls.append(call)
            self._lock.notify_all()
        try:
            if method == "GET" and path.endswith("/models"):
                data = [{"id": m, "object": "model", "created": 0, "owned_by": "scripted"} for m in self.models]
                await self._json(writer, 200, {"object": "list", "data": data})
            elif method == "POST" and path.endswith("/embeddings"):
                inputs = call.body.get("input", "")
                inputs = [inputs] if isinstance(inputs, str) else list(inputs)
                data = [
                    {"object": "embedding", "index": i, "embedding": embed(str(t), self.embedding_dim)}
                    for i, t in enumerate(inputs)
                ]
                usage = {"prompt_tokens": sum(len(str(t).split()) for t in inputs), "total_tokens": 0}
                await self._json(writer, 200, {"object": "list", "data": data, "model": call.model, "usage": usage})
            elif method == "POST" and path.endswith("/chat/completions"):
                return await self._chat(call, self._next_script(call.body), reader, writer)
            else:
                call.status = 404
                err = {
                    "message": f"no route {method} {path}",
                    "type": "invalid_request_error",
                    "param": None,
                    "code": "not_found",
                }
                await self._json(writer, 404, {"error": err})
            call.completed = True
            return True
        finally:
            call.ended_at = time.monotonic()
            self._touch()

    def _usage(self, call: Call, script: Script, items: Sequence[Mapping[str, Any]]) -> dict[str, int]:
        if script.usage is not None:
            u = dict(script.usage)
            u.setdefault("total_tokens", u.get("prompt_tokens", 0) + u.get("completion_tokens", 0))
            return u
        prompt = sum(len(str(m.get("content", "")).split()) for m in call.messages)
        return usage_chunk(prompt, len(items))["usage"]

    async def _chat(
        self, call: Call, script: Script, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        assert self._stop is not None
        ex = Exchange(reader, writer, call, self._stop)
        call.status = script.status
        if script.status >= 400:
            await self._json(
                writer, script.status, {"error": dict(script.error or {"message": "scripted error"})}, script.headers
            )
            call.completed = True
            return True
        if not call.stream:
            return await self._plain(call, script, ex)
        return await self._stream(call, script, ex)

    async def _plain(self, call: Call, script: Script, ex: Exchange) -> bool:
        items = script.items
        if script.stall_after is not None:
            await ex.pause(None)
        if items:
            await ex.pause(script.send_at(len(items) - 1) - (time.monotonic() - call.received_at))
        model = script.model or call.model or self.models[0]
        message = {"role": "assistant", "content": script.text()}
        reasons = [c.get("finish_reason") for i in items for c in i.get("choices") or [] if c.get("finish_reason")]
        finish = reasons[-1] if script.chunks is not None and reasons else script.finish_reason or "stop"
        body = {
            "id": f"chatcmpl-scripted-{call.index}", "object": "chat.completion", "created": int(time.time()), "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}],
            "usage": self._usage(call, script, items),
        }  # fmt: skip
        data = json.dumps(body, ensure_ascii=script.ascii_json).encode()
        await ex.write(
            http_head(200, {"content-type": "application/json", "content-length": str(len(data)), **script.headers})
            + data
        )
        call.items_sent, call.completed = len(items), True
        return True

    async def _stream(self, call: Call, script: Script, ex: Exchange) -> bool:
        model = script.model or call.model or self.models[0]
        envelope = {
            "id": f"chatcmpl-scripted-{call.index}",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": model,
        }
        sizes = [script.split_bytes] if isinstance(script.split_bytes, int) else list(script.split_bytes or [])
        pending = bytearray()
        n_write = 0

        async def send(payload: bytes, *, final: bool = False) -> None:
            nonlocal n_write
            pending.extend(payload)
            while pending:
                size = sizes[n_write % len(sizes)] if sizes else len(pending)
                if len(pending) < size and script.carry_split and not final:
                    return  # the rest goes out with the next event
                piece = bytes(pending[:size])
                del pending[:size]
                await ex.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
                n_write += 1
                if pending:
                    await ex.pause(script.split_pause_s)

        head = {
            "content-type": "text/event-stream",
            "cache-control": "no-cache",
            "transfer-encoding": "chunked",
            **script.headers,
        }
        await ex.write(http_head(200, head))
        if script.role_chunk and script.chunks is None:
            await send(sse({**envelope, **text_chunk("", role="assistant")}, script.ascii_json))
        items = script.items
        for i, item in enumerate(items):
            if script.stall_after is not None and i >= script.stall_after:
                await send(b"", final=True)
                await ex.pause(None)
            if script.drop_after is not None and i >= script.drop_after:
                return await self._drop(call, script, ex, send)
            await ex.pause(script.send_at(i) - (time.monotonic() - call.received_at))
            await send(sse({**envelope, **item}, script.ascii_json))
            call.items_sent = i + 1
        if script.stall_after is not None:
            await send(b"", final=True)
            await ex.pause(None)
        if script.drop_after is not None:
            return await self._drop(call, script, ex, send)
        if script.chunks is None:
            if script.finish_reason:
                await send(sse({**envelope, **finish_chunk(script.finish_reason)}, script.ascii_json))
            wants = (call.stream_options or {}).get("include_usage", False)
            if script.send_usage if script.send_usage is not None else wants:
                await send(
                    sse({**envelope, "choices": [], "usage": self._usage(call, script, items)}, script.ascii_json)
                )
        if script.done:
            await send(sse("[DONE]", script.ascii_json))
        await send(b"", final=True)
        call.completed = True  # before the last write: the client may close as soon as it has the body
        await ex.write(b"0\r\n\r\n")
        return True

    async def _drop(self, call: Call, script: Script, ex: Exchange, send: Callable[..., Any]) -> bool:
        await send(b"", final=True)
        call.completed = True
        if script.drop_mode == "end":
            await ex.write(b"0\r\n\r\n")
            return True
        return False  # the connection closes without the terminating chunk
