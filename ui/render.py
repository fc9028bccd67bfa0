"""Drawing the chat with Streamlit: turns, the live mark, notices, citations, the sidebar.

Stable hooks for the browser tests (and for anyone styling the page): every answer sits in a
container keyed ``turn-<n>`` whose text is in ``answer-text-<n>``; the status pill carries
``data-state``; the reconnect notice is keyed ``reconnecting``.
"""

from __future__ import annotations

import html
import uuid
from collections.abc import Callable
from datetime import UTC, datetime

import streamlit as st

from services.core.views import ConversationSummary, ResponseStatus
from ui import present
from ui.state import Connection, TurnState

__all__ = ["inject_css", "turn", "reconnecting", "empty_state", "sidebar"]

_CSS = """
<style>
.relay-meta { display:flex; flex-wrap:wrap; gap:.55rem; align-items:center; margin:.15rem 0 .35rem;
  font-size:.8rem; color:rgba(49,51,63,.65); }
.relay-status { display:inline-flex; align-items:center; gap:.35rem; padding:.08rem .6rem; border-radius:999px;
  font-weight:600; font-size:.74rem; letter-spacing:.01em; background:#eef2ff; color:#3730a3; }
.relay-status::before { content:""; width:.45rem; height:.45rem; border-radius:50%; background:currentColor; }
.relay-status[data-state="generating"]::before, .relay-status[data-state="queued"]::before,
.relay-status[data-state="retrieving"]::before { animation: relay-pulse 1.1s ease-in-out infinite; }
.relay-status[data-state="completed"] { background:#ecfdf5; color:#047857; }
.relay-status[data-state="failed"], .relay-status[data-state="unsent"] { background:#fef2f2; color:#b91c1c; }
.relay-status[data-state="cancelled"] { background:#f3f4f6; color:#4b5563; }
.relay-status[data-state="truncated"], .relay-status[data-state="content_filtered"] { background:#fffbeb; color:#b45309; }
@keyframes relay-pulse { 0%,100% { opacity:1 } 50% { opacity:.2 } }
.relay-sources { font-size:.78rem; font-weight:600; text-transform:uppercase; letter-spacing:.05em;
  color:rgba(49,51,63,.55); margin:.6rem 0 .1rem; }
.relay-placeholder { color:rgba(49,51,63,.6); font-style:italic; }
[data-testid="stExpander"] details summary p { font-size:.86rem; }
[data-testid="stExpander"] details { border-radius:.5rem; }
.st-key-conversations button { justify-content:flex-start; text-align:left; padding:.3rem .6rem; min-height:2.1rem;
  border:1px solid transparent; }
.st-key-conversations button > div { justify-content:flex-start; width:100%; }
.st-key-conversations button p { text-align:left; white-space:nowrap; overflow:hidden; text-overflow:ellipsis; }
.st-key-conversations button:hover { background:rgba(151,166,195,.15); }
.st-key-conversations button:disabled { background:rgba(79,70,229,.08); color:#312e81; border-color:rgba(79,70,229,.25);
  font-weight:600; cursor:default; }
.st-key-examples button { justify-content:flex-start; }
.st-key-examples button > div { justify-content:flex-start; width:100%; }
.st-key-brand p { font-size:1.3rem; font-weight:700; margin-bottom:0; }
</style>
"""

_PLACEHOLDERS = {
    ResponseStatus.QUEUED: "Waiting for a worker…",
    ResponseStatus.RETRIEVING: "Searching the documents…",
    ResponseStatus.GENERATING: "Thinking…",
}

Action = Callable[[int], None]


def inject_css() -> None:
    st.html(_CSS)


def _meta(t: TurnState) -> None:
    state = present.status_key(t)
    label = present.STATUS_LABELS.get(state, state)
    if t.cancel_requested and not t.terminal:
        label = "Cancelling…"
    timing = present.timing_line(t, datetime.now(UTC))
    st.markdown(
        f'<div class="relay-meta"><span class="relay-status" data-state="{html.escape(state)}">{html.escape(label)}</span>'
        f'<span class="relay-timing">{html.escape(timing)}</span></div>',
        unsafe_allow_html=True,
    )


def _sources(t: TurnState) -> None:
    if not t.sources:
        return
    st.markdown('<div class="relay-sources">Sources</div>', unsafe_allow_html=True)
    for label, passage in zip(present.citation_labels(t.sources), t.sources, strict=True):
        with st.expander(label):
            st.markdown(present.passage_markdown(passage.text))
            st.caption(f"{passage.source} · part {passage.position + 1} · relevance {passage.score:.2f}")


def turn(
    t: TurnState,
    n: int,
    *,
    last: bool,
    on_retry: Action,
    on_cancel: Action,
    notice: Connection | None = None,
) -> None:
    """One question and its answer; ``notice`` (a failing connection) shows "Reconnecting…" under a live answer."""
    with st.chat_message("user"):
        st.markdown(t.question)
    with st.chat_message("assistant"), st.container(key=f"turn-{n}"):
        live = not t.settled and t.response_id is not None
        if t.text:
            with st.container(key=f"answer-text-{n}"):
                st.markdown(t.text + (" ▍" if live and not t.terminal else ""))
        elif live and t.status in _PLACEHOLDERS:
            st.markdown(f'<div class="relay-placeholder">{_PLACEHOLDERS[t.status]}</div>', unsafe_allow_html=True)
        _meta(t)
        if notice is not None and notice.reconnecting:
            reconnecting(notice)
        outcome = present.describe_outcome(t)
        if outcome is not None and (t.terminal or t.status is None):
            box = {"error": st.error, "warning": st.warning, "info": st.info}[outcome.kind]
            box(f"**{outcome.title}.** {outcome.message}")
        _sources(t)
        if live and not t.terminal:
            st.button(
                "Cancel", key=f"cancel-{n}", icon=":material/stop_circle:", on_click=on_cancel, args=(n,),
                disabled=t.cancel_requested, help="Stop generating this answer (the text so far is kept)",
            )  # fmt: skip
        elif last and outcome is not None and outcome.retry:
            st.button(
                "Retry",
                key=f"retry-{n}",
                icon=":material/refresh:",
                on_click=on_retry,
                args=(n,),
                help="Ask the same question again",
            )


def reconnecting(conn: Connection, now: float | None = None) -> None:
    import time

    wait = max(0.0, conn.retry_at - (now if now is not None else time.monotonic()))
    with st.container(key="reconnecting"):
        st.warning(
            f"**Reconnecting…** The relay is not answering (try {conn.failures}; next in {wait:.0f} s). "
            "Your answer keeps going in the background and will continue from where it stopped.",
            icon=":material/wifi_off:",
        )


def empty_state(examples: list[str], on_pick: Callable[[str], None]) -> None:
    st.markdown("## What would you like to know?")
    st.markdown(
        "Ask about the documents in the library. Answers stream in as they are written, with the passages they draw on."
    )
    st.caption("Try one of these:")
    with st.container(key="examples"):
        for i, q in enumerate(examples):
            st.button(
                q, key=f"example-{i}", icon=":material/chat_bubble:", on_click=on_pick, args=(q,), width="stretch"
            )


def sidebar(
    *,
    title: str,
    user_id: str,
    current: uuid.UUID | None,
    conversations: list[ConversationSummary] | None,
    on_new: Callable[[], None],
    on_open: Callable[[uuid.UUID], None],
    user_in_url: bool,
) -> None:
    with st.sidebar:
        with st.container(key="brand"):
            st.markdown(f":material/forum: {title}")
        st.caption("Answers from your documents, with sources.")
        st.button(
            "New conversation",
            key="new-conversation",
            icon=":material/add:",
            width="stretch",
            on_click=on_new,
        )
        st.markdown("**Recent conversations**")
        if conversations is None:
            st.caption("Unavailable right now — the list comes back when the relay answers.")
        elif not conversations:
            st.caption("None yet. Your questions will be listed here.")
        with st.container(key="conversations", gap=None):
            for c in conversations or []:
                is_current = c.conversation_id == current
                st.button(
                    present.short_title(c.title or "Untitled", 60), key=f"conv-{c.conversation_id}",
                    type="secondary" if is_current else "tertiary", width="stretch", disabled=is_current,
                    on_click=on_open, args=(c.conversation_id,),
                )  # fmt: skip
        st.divider()
        if user_in_url:
            st.caption(
                f"Your id `{user_id}` lives in this page's link: bookmark it to come back to your conversations."
            )
        else:
            st.caption(f"User `{user_id}`")
