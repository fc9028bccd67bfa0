"""The chat page under Streamlit's AppTest, talking over real HTTP to a scripted relay stub.

Each ``at.run()`` is one page run; the stub reveals one more chunk per poll, so a test steps through
an answer deterministically. The real-browser tests (tests/browser) cover what AppTest cannot:
the fragment's own timer, reloads, the double Enter in a real input.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from relay_stub import RelayStub
from streamlit.testing.v1 import AppTest
from streamlit.testing.v1.errors import AppTestError

from services.core.contracts import Passage
from services.core.views import ErrorDetail, ResponseStatus

APP = Path(__file__).resolve().parents[2] / "ui" / "app.py"
USER = "u-page-test"
GPL = Passage(
    text="5. Conveying Modified Source Versions.\n\nYou may convey a work based on the Program.",
    source="GPL-3.txt", position=41, heading="5. Conveying Modified Source Versions", score=0.83,
)  # fmt: skip
CHUNKS = ["Under ", "the GPL ", "you must ", "keep the notices."]
FULL = "".join(CHUNKS)


def open_page(query: dict[str, str] | None = None) -> AppTest:
    at = AppTest.from_file(str(APP), default_timeout=20)
    at.query_params.update({"u": USER, **(query or {})})
    return at.run()


def run_until(at: AppTest, done: Callable[[AppTest], bool], *, runs: int = 60) -> AppTest:
    for _ in range(runs):
        if done(at):
            return at
        time.sleep(0.03)  # past the (test-sized) back-off
        at.run()
    raise AssertionError(f"condition not met after {runs} runs; page shows {texts(at)}")


def texts(at: AppTest) -> list[str]:
    return [m.value for m in at.markdown]


def state_of(at: AppTest) -> str | None:
    for value in texts(at)[::-1]:
        if 'class="relay-status"' in value:
            return value.split('data-state="')[1].split('"')[0]
    return None


def query(at: AppTest, name: str) -> str:
    value = at.query_params[name]
    return value[0] if isinstance(value, list) else value


def settled(at: AppTest) -> bool:
    return not at.session_state["chat"].busy


def ask(at: AppTest, question: str) -> AppTest:
    return at.chat_input[0].set_value(question).run()


pytestmark = pytest.mark.usefixtures("page_env")


def test_answer_grows_in_place_then_completes_with_citations_and_the_input_back(page_env: RelayStub) -> None:
    page_env.next_answer(CHUNKS, sources=[GPL])
    at = ask(open_page(), "What does the GPL require?")
    assert at.chat_input[0].disabled, "the input must be disabled while the answer is generated"
    shown: list[str] = []
    for _ in range(50):
        if state_of(at) == "completed":
            break
        shown += [t for t in texts(at) if t.startswith("Under") and t not in shown]
        at.run()
    assert len(shown) >= 3 and all(s.endswith(" ▍") for s in shown), shown  # grew over several runs, marked live
    assert FULL in texts(at)  # exact, the live mark gone
    assert [e.label for e in at.expander] == ["[1] GPL-3.txt — 5. Conveying Modified Source Versions"]
    assert not at.chat_input[0].disabled
    assert query(at, "c") == str(page_env.only().conversation_id)


def test_the_input_is_disabled_while_answering_so_a_second_submit_cannot_happen(page_env: RelayStub) -> None:
    page_env.next_answer(CHUNKS)
    at = ask(open_page(), "Why?")
    with pytest.raises(AppTestError, match="disabled"):
        ask(at, "Why?")
    at.run()
    assert len(page_env.asked) == 1 and len(page_env.answers) == 1
    assert len([t for t in texts(at) if t == "Why?"]) == 1


def test_a_resubmit_the_page_forgot_maps_to_the_same_answer_by_its_idempotency_key(page_env: RelayStub) -> None:
    """A rerun interrupted after the POST (page state lost) sends the same key again → one answer."""
    page_env.next_answer(CHUNKS)
    at = ask(open_page(), "Why?")
    chat = at.session_state["chat"]
    chat.turns.clear()
    chat.conversation_id = None
    at.query_params.pop("c", None)
    ask(at.run(), "Why?")
    (b1, k1), (b2, k2) = page_env.asked
    assert k1 == k2 and k1 is not None and k1.startswith("ui:new-")
    assert len(page_env.answers) == 1


def test_reload_mid_stream_restores_the_transcript_and_the_running_answer(page_env: RelayStub) -> None:
    page_env.next_answer(CHUNKS)
    first = ask(open_page(), "What does the GPL require?")
    run_until(first, lambda a: any(t.startswith("Under the GPL") for t in texts(a)))
    cid = str(page_env.only().conversation_id)
    polls_before = len(page_env.polls())

    reloaded = open_page({"c": cid})  # a new session: nothing but the URL
    assert "What does the GPL require?" in texts(reloaded)
    assert any(t.startswith("Under the GPL") for t in texts(reloaded))
    assert reloaded.chat_input[0].disabled
    assert page_env.polls()[polls_before]["since"] == "0"  # resumed with the whole text, attempt unknown
    run_until(reloaded, settled)
    assert FULL in texts(reloaded)


def test_status_down_shows_reconnecting_then_resumes_from_its_offset(page_env: RelayStub) -> None:
    page_env.next_answer(CHUNKS)
    at = ask(open_page(), "Q")
    run_until(at, lambda a: any(t.startswith("Under the GPL") for t in texts(a)))
    held = at.session_state["chat"].turns[0].text
    page_env.status_down = True
    run_until(at, lambda a: any("Reconnecting…" in w.value for w in a.warning))
    for _ in range(3):
        time.sleep(0.03)
        at.run()
    page_env.status_down = False
    n = len(page_env.polls())
    run_until(at, settled)
    assert FULL in texts(at)
    resumed = page_env.polls()[n]
    assert resumed["since"] == str(len(held)) and resumed["attempt"] == "1"  # from its offset: nothing fetched twice
    assert not at.warning


def test_a_restarted_attempt_redraws_the_answer(page_env: RelayStub) -> None:
    page_env.next_answer(["First ", "attempt ", "text ", "never ", "finished"])
    at = ask(open_page(), "Q")
    run_until(at, lambda a: any(t.startswith("First attempt") for t in texts(a)))
    page_env.only().restart(["Second ", "attempt."])
    run_until(at, settled)
    assert "Second attempt." in texts(at)
    assert not any("First" in t for t in texts(at))


def test_a_failure_shows_its_cause_and_retry_asks_again_as_a_fresh_answer(page_env: RelayStub) -> None:
    page_env.next_answer(
        ["Partial "], end=ResponseStatus.FAILED,
        error=ErrorDetail(code="provider_unavailable", message="The model server refused the connection."),
    )  # fmt: skip
    page_env.next_answer(["Fine now."])
    at = run_until(ask(open_page(), "Q"), settled)
    [err] = at.error
    assert "The model server is unavailable" in err.value and "refused the connection" in err.value
    assert "Partial" in texts(at)[1]  # the partial text is kept
    at.button(key="retry-0").click().run()
    run_until(at, settled)
    (_, k1), (_, k2) = page_env.asked
    assert k1 != k2, "a retry must not be swallowed by de-duplication"
    assert len(page_env.answers) == 2 and "Fine now." in texts(at)
    assert [t for t in texts(at) if t == "Q"] == ["Q", "Q"]


def test_cancel_posts_a_cancel_and_shows_the_answer_cancelled_with_its_partial_text(page_env: RelayStub) -> None:
    page_env.next_answer([f"word{i} " for i in range(40)])
    at = ask(open_page(), "Q")
    run_until(at, lambda a: any(t.startswith("word0 word1") for t in texts(a)))
    at.button(key="cancel-0").click().run()
    assert len(page_env.requests("POST", f"/api/response/{page_env.only().response_id}/cancel")) == 1
    run_until(at, settled)
    assert state_of(at) == "cancelled"
    assert any("You cancelled this answer" in i.value for i in at.info)
    assert any(t.startswith("word0 word1") for t in texts(at))


def test_follow_up_questions_stay_in_the_same_conversation(page_env: RelayStub) -> None:
    page_env.next_answer(["One."])
    page_env.next_answer(["Two."])
    at = run_until(ask(open_page(), "First?"), settled)
    run_until(ask(at, "And then?"), settled)
    (first, _), (second, _) = page_env.asked
    assert first.conversation_id is None and second.conversation_id == page_env.last().conversation_id
    assert ["First?", "One.", "And then?", "Two."] == [
        t for t in texts(at) if t in {"First?", "One.", "And then?", "Two."}
    ]


def test_sidebar_lists_conversations_most_recent_first_and_reopens_one(page_env: RelayStub) -> None:
    older = page_env.add_conversation(USER, [("Older question", "Older answer.", ResponseStatus.COMPLETED)])
    page_env.add_conversation(USER, [("Newer question", "Newer answer.", ResponseStatus.COMPLETED)])
    page_env.add_conversation("someone-else", [("Not yours", "x", ResponseStatus.COMPLETED)])
    at = open_page()
    assert [b.label for b in at.sidebar.button if (b.key or "").startswith("conv-")] == [
        "Newer question",
        "Older question",
    ]
    at.button(key=f"conv-{older}").click().run()
    assert query(at, "c") == str(older)
    assert "Older question" in texts(at) and "Older answer." in texts(at)


def test_new_conversation_clears_the_page_and_starts_a_separate_one(page_env: RelayStub) -> None:
    page_env.next_answer(["One."])
    page_env.next_answer(["Two."])
    at = run_until(ask(open_page(), "First?"), settled)
    first_cid = page_env.last().conversation_id
    at.button(key="new-conversation").click().run()
    assert "c" not in at.query_params and "First?" not in texts(at)
    assert any("What would you like to know?" in t for t in texts(at))
    run_until(ask(at, "Fresh?"), settled)
    assert page_env.asked[-1][0].conversation_id is None
    assert page_env.last().conversation_id != first_cid


def test_status_down_when_opening_a_conversation_shows_reconnecting_until_it_answers(page_env: RelayStub) -> None:
    cid = page_env.add_conversation(USER, [("Saved question", "Saved answer.", ResponseStatus.COMPLETED)])
    page_env.status_down = True
    at = open_page({"c": str(cid)})
    assert any("Reconnecting…" in w.value for w in at.warning) and at.chat_input[0].disabled
    page_env.status_down = False
    run_until(at, lambda a: "Saved answer." in texts(a))
    assert not at.chat_input[0].disabled


def test_an_unknown_conversation_starts_a_new_one(page_env: RelayStub) -> None:
    at = open_page({"c": str(uuid.uuid4())})
    run_until(at, lambda a: any("What would you like to know?" in t for t in texts(a)))
    assert "c" not in at.query_params


def test_a_question_that_could_not_be_sent_is_kept_and_retried_under_the_same_key(page_env: RelayStub) -> None:
    page_env.ingress_down = True
    page_env.next_answer(["Arrived."])
    at = ask(open_page(), "Q")
    [err] = at.error
    assert "not sent" in err.value
    page_env.ingress_down = False
    at.button(key="retry-0").click().run()
    run_until(at, settled)
    assert page_env.asked[-1][1] == page_env.only().idempotency_key
    assert [t for t in texts(at) if t == "Q"] == ["Q"] and "Arrived." in texts(at)


def test_polls_follow_the_servers_advice_and_stop_when_final(page_env: RelayStub) -> None:
    page_env.next_answer(CHUNKS, poll_after_ms=60_000)
    at = ask(open_page(), "Q")
    for _ in range(5):
        at.run()
    assert len(page_env.polls()) == 1, "polled again before poll_after_ms"
    page_env.only().poll_after_ms = 1
    at.session_state["chat"].next_poll_at = 0.0
    run_until(at, settled)
    n = len(page_env.polls())
    for _ in range(3):
        at.run()
    assert len(page_env.polls()) == n, "kept polling a final answer"


def test_each_browser_gets_its_own_user_id_kept_in_the_url(page_env: RelayStub) -> None:
    at = AppTest.from_file(str(APP), default_timeout=20).run()
    uid = query(at, "u")
    assert uid.startswith("u-")
    assert {c[3]["x-user-id"] for c in page_env.calls} == {uid}


def test_ui_user_id_names_every_browser_the_same(page_env: RelayStub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("UI_USER_ID", "alice")
    at = AppTest.from_file(str(APP), default_timeout=20).run()
    assert "u" not in at.query_params
    assert {c[3]["x-user-id"] for c in page_env.calls} == {"alice"}
