"""The llm-relay chat page: ``streamlit run ui/app.py``.

Only wiring lives here: settings, the API client, the session's ``ChatState``, callbacks and the
live fragment that follows a running answer (``st.fragment(run_every=UI_TICK_S)``; it calls the
status service only when the server's ``poll_after_ms`` — or the reconnect back-off — says so, and
stops when the answer is final). The conversation lives in the URL (``?c=<id>``) and the database,
so a reload rebuilds the page from ``GET /api/conversation/{id}``.
"""

from __future__ import annotations

import importlib.util
import re
import secrets
import sys
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

if importlib.util.find_spec("ui") is None:  # `streamlit run ui/app.py` puts ui/ on the path, not the project
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import streamlit as st

from services.core.views import ConversationSummary, ErrorDetail, ResponseStatus, ResponseView
from ui import render
from ui.client import ApiError, BadAnswer, NotFound, Refused, RelayClient, Unreachable
from ui.settings import UiSettings
from ui.state import ChatState, TurnState

EXAMPLES = [
    "What must I do to distribute modified GPL-3 code?",
    "Does Apache-2.0 grant a patent license?",
    "How does the MPL-2.0 define a Larger Work?",
]
_USER_ID = re.compile(r"^[A-Za-z0-9_.@-]{1,128}$")


@st.cache_resource(show_spinner=False)
def _client(ingress_url: str, status_url: str, timeout: float) -> RelayClient:
    return RelayClient(ingress_url, status_url, timeout=timeout)


def _settings() -> UiSettings:
    return UiSettings()


def _api() -> RelayClient:
    s = _settings()
    return _client(s.ingress_url, s.status_url, s.request_timeout_s)


def _user_id(settings: UiSettings) -> str:
    """``UI_USER_ID``, else this browser's id from ``?u=`` (made up on the first visit)."""
    if settings.user_id:
        return settings.user_id
    uid = st.query_params.get("u")
    if not uid or not _USER_ID.match(uid):
        uid = f"u-{secrets.token_hex(8)}"
        st.query_params["u"] = uid
    return uid


def _chat() -> ChatState:
    chat: ChatState = st.session_state["chat"]
    return chat


def _flash(message: str) -> None:
    st.session_state.setdefault("flash", []).append(message)


# --- what the person does ---------------------------------------------------------------------


def _ask(question: str, replace: int | None = None) -> None:
    """Submit ``question`` as a new turn (or resend the unsent turn ``replace`` under its own key)."""
    chat, settings = _chat(), _settings()
    question = question.strip()
    if not question:
        return
    if chat.busy:
        _flash("An answer is still being written — wait for it or cancel it.")
        return
    if replace is None:
        key = chat.key_for(question)
    else:
        key = chat.turns[replace].idempotency_key or chat.key_for(question, replace)
    try:
        accepted = _api().ask(
            chat.user_id, question, conversation_id=chat.conversation_id, idempotency_key=key, model=settings.model
        )
    except Unreachable as exc:
        turn = TurnState.unsent(
            question, key, f"The relay could not be reached ({exc}). Retry when it is back.", retryable=True
        )
    except Refused as exc:
        turn = TurnState.unsent(question, key, exc.message, retryable=exc.status in (408, 409, 429))
    except BadAnswer as exc:
        turn = TurnState.unsent(question, key, f"The relay answered something unexpected: {exc}", retryable=True)
    else:
        turn = TurnState(
            question, accepted.response_id, status=accepted.status, idempotency_key=key, created_at=datetime.now(UTC)
        )
        chat.conversation_id = accepted.conversation_id
        st.query_params["c"] = str(accepted.conversation_id)
        chat.next_poll_at = 0.0
    if replace is None:
        chat.turns.append(turn)
    else:
        chat.turns[replace] = turn


def _on_submit() -> None:
    _ask(st.session_state.get("ask") or "")


def _retry(n: int) -> None:
    t = _chat().turns[n]
    if t.response_id is None:
        _ask(t.question, replace=n)  # never reached the relay: same key, so a lost reply cannot double it
    else:
        _ask(t.question)  # a fresh answer: a new turn, a new key


def _cancel(n: int) -> None:
    chat = _chat()
    t = chat.turns[n]
    if t.response_id is None:
        return
    try:
        res = _api().cancel(chat.user_id, t.response_id)
    except ApiError as exc:
        _flash(f"Could not cancel: {exc}")
        return
    t.cancel_requested = True
    chat.next_poll_at = 0.0
    if not res.cancelled:
        _flash(res.message)


def _new_conversation() -> None:
    st.query_params.pop("c", None)
    st.session_state["chat"] = ChatState(_chat().user_id)


def _open(conversation_id: uuid.UUID) -> None:
    st.query_params["c"] = str(conversation_id)
    st.session_state["chat"] = ChatState.opening(_chat().user_id, conversation_id)


# --- following the answer ---------------------------------------------------------------------


def _poll(chat: ChatState, api: RelayClient, settings: UiSettings, now: float) -> None:
    """One round of polls for every running turn; on failure the connection backs off."""
    views: list[ResponseView] = []
    again = False
    for _ in range(3):  # a gap or a partial redraw is fetched again at once
        again = False
        for t in chat.turns:
            if t.settled or t.response_id is None:
                continue
            try:
                view = api.poll(chat.user_id, t.response_id, since=t.since, attempt=t.attempt)
            except NotFound:
                t.status, t.synced = ResponseStatus.FAILED, True
                t.error = ErrorDetail(code="not_found", message="The relay no longer knows this answer.")
                continue
            except ApiError as exc:
                chat.conn.failed(now, str(exc), base=settings.backoff_base_s, cap=settings.backoff_max_s)
                return
            merged = t.apply(view)
            views.append(view)
            again = again or merged.again
        if not again:
            break
    chat.conn.recovered()
    chat.schedule(now, views, again)


def _live() -> None:
    chat, settings = _chat(), _settings()
    start = chat.first_live()
    if start is None:
        st.rerun()
    now = time.monotonic()
    if chat.due(now):
        _poll(chat, _api(), settings, now)
    for n in range(start, len(chat.turns)):
        t = chat.turns[n]
        render.turn(
            t,
            n,
            last=n == len(chat.turns) - 1,
            on_retry=_retry,
            on_cancel=_cancel,
            notice=None if t.settled else chat.conn,
        )
    if not chat.busy:
        st.rerun()  # the whole page: the input comes back, the sidebar refreshes


def _load() -> None:
    """Fetch the conversation in ``?c=``; while the status service is down, say so and back off."""
    chat, settings = _chat(), _settings()
    now = time.monotonic()
    if chat.conn.ready(now):
        try:
            assert chat.conversation_id is not None
            chat.load(_api().conversation(chat.user_id, chat.conversation_id))
        except NotFound:
            _flash("That conversation was not found — it may belong to another user. Starting a new one.")
            _new_conversation()
            st.rerun()
        except ApiError as exc:
            chat.conn.failed(now, str(exc), base=settings.backoff_base_s, cap=settings.backoff_max_s)
        else:
            chat.conn.recovered()
            st.rerun()
    render.reconnecting(chat.conn, now)


def _summary(chat: ChatState) -> ConversationSummary:
    assert chat.conversation_id is not None
    return ConversationSummary(
        conversation_id=chat.conversation_id, title=chat.turns[0].question, turn_count=len(chat.turns),
        updated_at=datetime.now(UTC),
    )  # fmt: skip


# --- the page -----------------------------------------------------------------------------------


def _sync_with_url(user_id: str) -> ChatState:
    chat: ChatState | None = st.session_state.get("chat")
    if chat is None or chat.user_id != user_id:
        chat = st.session_state["chat"] = ChatState(user_id)
    wanted = st.query_params.get("c")
    try:
        wanted_id = uuid.UUID(wanted) if wanted else None
    except ValueError:
        st.query_params.pop("c", None)
        wanted_id = None
    if wanted_id != chat.conversation_id:
        chat = st.session_state["chat"] = ChatState.opening(user_id, wanted_id) if wanted_id else ChatState(user_id)
    return chat


def main() -> None:
    settings = _settings()
    st.set_page_config(page_title=settings.title, page_icon=":material/forum:", layout="centered")
    st.set_option("client.toolbarMode", "minimal")
    render.inject_css()
    user_id = _user_id(settings)
    chat = _sync_with_url(user_id)
    for message in st.session_state.pop("flash", []):
        st.toast(message)

    try:
        conversations = _api().conversations(user_id, limit=settings.conversations_limit)
    except ApiError:
        conversations = None
    if conversations is not None and chat.conversation_id and chat.turns:
        if all(c.conversation_id != chat.conversation_id for c in conversations):  # not folded yet: list it anyway
            conversations.insert(0, _summary(chat))
    render.sidebar(
        title=settings.title, user_id=user_id, current=chat.conversation_id, conversations=conversations,
        on_new=_new_conversation, on_open=_open, user_in_url=not settings.user_id,
    )  # fmt: skip

    if not chat.loaded:
        st.fragment(_load, run_every=settings.tick_s)()
    else:
        start = chat.first_live()
        settled = chat.turns if start is None else chat.turns[:start]
        for n, t in enumerate(settled):
            render.turn(t, n, last=n == len(chat.turns) - 1, on_retry=_retry, on_cancel=_cancel)
        if start is not None:
            st.fragment(_live, run_every=settings.tick_s)()
        elif not chat.turns:
            render.empty_state(EXAMPLES, _ask)

    busy = chat.busy or not chat.loaded
    st.chat_input(
        "Answer in progress — wait for it or cancel it" if busy else "Ask about your documents…",
        key="ask", disabled=busy, on_submit=_on_submit, submit_mode="disable", max_chars=settings.max_chars,
    )  # fmt: skip


main()
