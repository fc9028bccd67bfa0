"""The model behind a small Protocol, and its adapter on the official ``openai.AsyncOpenAI`` client.

``ChatModel.stream(messages, model=...)`` yields typed pieces — :class:`TextPiece`, :class:`FinishPiece`,
:class:`UsagePiece` — and raises ``services.core.errors``:

    TransientError(provider_unavailable)   429 / 408 / 409 / 5xx / no connection, before any text
                                           (after the client's own retries with back-off)
    PermanentError(provider_error)         any other 4xx; an error event in the stream after text
    PermanentError(provider_disconnected)  the stream ended or broke after text, with no finish reason
    PermanentError(provider_timeout)       no text for ``stall_timeout_s``

Closing the iterator (or cancelling the task that drives it) closes the HTTP stream, so the
provider sees the client go away.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, cast

import openai
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletionMessageParam

from services.core.contracts import FailureCode, FinishReason, Usage
from services.core.errors import PermanentError, TransientError

__all__ = ["ChatModel", "OpenAIChat", "TextPiece", "FinishPiece", "UsagePiece", "Piece", "finish_reason_of"]


@dataclass(frozen=True)
class TextPiece:
    text: str


@dataclass(frozen=True)
class FinishPiece:
    reason: FinishReason
    raw: str


@dataclass(frozen=True)
class UsagePiece:
    usage: Usage


Piece = TextPiece | FinishPiece | UsagePiece


class ChatModel(Protocol):
    def stream(self, messages: Sequence[Mapping[str, str]], *, model: str) -> AsyncIterator[Piece]:
        """Stream one answer; raises TransientError / PermanentError."""
        ...

    async def close(self) -> None: ...


_RETRYABLE_STATUS = {408, 409, 429}


def finish_reason_of(raw: str) -> FinishReason:
    if raw == "function_call":
        return FinishReason.TOOL_CALLS
    try:
        return FinishReason(raw)
    except ValueError:
        return FinishReason.OTHER


def _status_error(exc: openai.APIStatusError) -> TransientError | PermanentError:
    detail = exc.message if isinstance(exc.message, str) else str(exc)
    status = exc.status_code
    if status in _RETRYABLE_STATUS or status >= 500:
        busy = "is rate limiting us" if status == 429 else f"answered HTTP {status}"
        return TransientError(
            f"The model server {busy}; the answer will be retried.", code=FailureCode.PROVIDER_UNAVAILABLE
        )
    return PermanentError(
        f"The model server refused the request (HTTP {status}): {detail}", code=FailureCode.PROVIDER_ERROR
    )


def _malformed(chunk: object) -> PermanentError:
    return PermanentError(
        f"The model server sent a chunk that is not a chat completion: {str(chunk)[:120]}",
        code=FailureCode.PROVIDER_ERROR,
    )


async def _raw_chunks(stream: Any) -> AsyncIterator[Mapping[str, Any]]:
    """The stream's chunks as plain JSON objects.

    The SDK builds a pydantic model for every chunk, about 0.5 ms of CPU each: most of what a
    generator does while streaming. We read few fields, so we take the server-sent events the SDK
    has already parsed (with its error mapping: timeouts and broken connections still raise
    ``APITimeoutError`` / ``APIConnectionError``) and decode their JSON ourselves. An SDK without
    that hook gets its models dumped instead.
    """
    events = getattr(stream, "_iter_events", None)
    if events is None:
        async for model in stream:
            yield model.model_dump()
        return
    async for sse in events():
        if sse.data.startswith("[DONE]"):
            break
        try:
            data = json.loads(sse.data)
        except ValueError:
            raise _malformed(sse.data) from None
        if not isinstance(data, dict):
            raise _malformed(data)
        error = data.get("error")
        if error:  # an error event inside the stream, as the SDK itself reports it
            message = error.get("message") if isinstance(error, dict) else None
            raise openai.APIError(
                message=message if isinstance(message, str) and message else "An error occurred during streaming",
                request=stream.response.request,
                body=error,
            )
        yield data


class OpenAIChat:
    """``ChatModel`` on ``AsyncOpenAI`` (any OpenAI-compatible base URL), ``stream_options.include_usage`` on."""

    def __init__(
        self,
        *,
        base_url: str | None,
        api_key: str,
        max_retries: int = 2,
        stall_timeout_s: float = 60.0,
        connect_timeout_s: float = 10.0,
        max_tokens: int | None = None,
        temperature: float | None = None,
        client: AsyncOpenAI | None = None,
    ) -> None:
        self.stall_timeout_s = stall_timeout_s
        self._limits: dict[str, float | int] = {
            k: v for k, v in (("max_tokens", max_tokens), ("temperature", temperature)) if v is not None
        }
        # the client's read timeout is a back-stop; the stall deadline below fires first
        timeout = openai.Timeout(stall_timeout_s + 5.0, connect=connect_timeout_s)
        self._client = client or AsyncOpenAI(
            base_url=base_url, api_key=api_key, max_retries=max_retries, timeout=timeout
        )

    async def close(self) -> None:
        await self._client.close()

    async def stream(self, messages: Sequence[Mapping[str, str]], *, model: str) -> AsyncIterator[Piece]:
        loop = asyncio.get_running_loop()
        # one deadline from the call on: a server that takes the request and never answers is a stall
        # too, and must not be retried by the client for (timeout x retries) before anyone hears of it
        deadline = loop.time() + self.stall_timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                stream = await self._create(messages, model=model)
        except TimeoutError as exc:
            raise self._stalled() from exc
        got_text = False
        finish: FinishPiece | None = None
        try:
            chunks = _raw_chunks(stream).__aiter__()
            while True:
                try:
                    async with asyncio.timeout_at(deadline):
                        chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError as exc:
                    raise self._stalled() from exc
                except openai.APITimeoutError as exc:
                    raise self._stalled() from exc
                except openai.APIConnectionError as exc:
                    if finish is not None:
                        break  # everything that matters arrived; only the tail (usage, [DONE]) is lost
                    raise self._broken(got_text) from exc
                except openai.APIError as exc:  # an error event inside the stream
                    if not got_text:
                        raise TransientError(
                            f"The model server failed: {exc.message}", code=FailureCode.PROVIDER_UNAVAILABLE
                        ) from exc
                    raise PermanentError(
                        f"The model server failed mid-answer: {exc.message}", code=FailureCode.PROVIDER_ERROR
                    ) from exc
                for piece in self._pieces(chunk):
                    if isinstance(piece, TextPiece):
                        got_text = True
                        deadline = loop.time() + self.stall_timeout_s
                    elif isinstance(piece, FinishPiece):
                        finish = piece
                    yield piece
            if finish is None:
                raise self._broken(got_text)
        finally:
            await stream.close()

    async def _create(self, messages: Sequence[Mapping[str, str]], *, model: str) -> Any:
        try:
            return await self._client.chat.completions.create(
                model=model,
                messages=cast("list[ChatCompletionMessageParam]", [dict(m) for m in messages]),
                stream=True,
                stream_options={"include_usage": True},
                **self._limits,  # type: ignore[arg-type]
            )
        except openai.APIStatusError as exc:
            raise _status_error(exc) from exc
        except openai.APITimeoutError as exc:
            raise self._stalled() from exc
        except openai.APIConnectionError as exc:
            raise TransientError(
                "The model server could not be reached; the answer will be retried.",
                code=FailureCode.PROVIDER_UNAVAILABLE,
            ) from exc

    @staticmethod
    def _pieces(chunk: Mapping[str, Any]) -> list[Piece]:
        out: list[Piece] = []
        choices = chunk.get("choices") or []  # a chunk may carry no choices at all (usage-only, keep-alive)
        usage = chunk.get("usage")
        if not isinstance(choices, list) or not isinstance(usage, dict | None):
            raise _malformed(chunk)
        for choice in choices:
            if not isinstance(choice, dict) or not isinstance(choice.get("delta") or {}, dict):
                raise _malformed(chunk)
            if (choice.get("index") or 0) != 0:
                continue
            content = (choice.get("delta") or {}).get("content")
            if content:
                out.append(TextPiece(str(content)))
            reason = choice.get("finish_reason")
            if reason:
                out.append(FinishPiece(finish_reason_of(str(reason)), str(reason)))
        if usage:
            out.append(
                UsagePiece(
                    Usage(
                        prompt_tokens=int(usage.get("prompt_tokens") or 0),
                        completion_tokens=int(usage.get("completion_tokens") or 0),
                        total_tokens=int(usage.get("total_tokens") or 0),
                    )
                )
            )
        return out

    def _stalled(self) -> PermanentError:
        return PermanentError(
            f"The model sent nothing for {self.stall_timeout_s:g} s; the answer was stopped.",
            code=FailureCode.PROVIDER_TIMEOUT,
        )

    @staticmethod
    def _broken(got_text: bool) -> TransientError | PermanentError:
        if not got_text:
            return TransientError(
                "The model server closed the connection before answering; the answer will be retried.",
                code=FailureCode.PROVIDER_UNAVAILABLE,
            )
        return PermanentError(
            "The model server closed the connection before the answer was finished; the text so far is kept.",
            code=FailureCode.PROVIDER_DISCONNECTED,
        )
