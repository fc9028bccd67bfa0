"""The prompt: instructions, numbered passages with their sources, earlier turns, the question — within bounds."""

from __future__ import annotations

from services.core.contracts import Passage, Turn
from services.generator.prompting import NO_PASSAGES, SYSTEM_INSTRUCTIONS, PromptLimits, build_messages


def passage(text: str, source: str = "GPL-3.txt", position: int = 0, heading: str | None = None) -> Passage:
    return Passage(text=text, source=source, position=position, heading=heading, score=0.5)


def test_instructions_ask_for_numbered_citations_and_an_honest_no_answer() -> None:
    messages = build_messages("What is copyleft?", [passage("text")]).messages
    assert messages[0] == {"role": "system", "content": SYSTEM_INSTRUCTIONS}
    assert "[1]" in SYSTEM_INSTRUCTIONS and "do not contain" in SYSTEM_INSTRUCTIONS


def test_passages_are_numbered_best_first_with_source_and_heading_next_to_the_question() -> None:
    prompt = build_messages(
        "  May I sell copies?  ",
        [
            passage("You may charge any price.", heading="4. Conveying Verbatim Copies"),
            passage("Other text.", "MIT.txt", 2),
        ],
    )
    last = prompt.messages[-1]
    assert last["role"] == "user"
    assert "[1] (GPL-3.txt, § 4. Conveying Verbatim Copies)\nYou may charge any price." in last["content"]
    assert "[2] (MIT.txt, part 3)\nOther text." in last["content"]
    assert (
        last["content"].index("[1]")
        < last["content"].index("[2]")
        < last["content"].index("Question: May I sell copies?")
    )
    assert last["content"].endswith("Question: May I sell copies?")
    assert [p.source for p in prompt.passages] == ["GPL-3.txt", "MIT.txt"]


def test_no_passages_is_said_so_the_model_can_say_it_does_not_know() -> None:
    prompt = build_messages("Anything?", [])
    assert NO_PASSAGES in prompt.messages[-1]["content"] and prompt.passages == ()


def test_earlier_turns_come_before_the_question_as_user_and_assistant_messages() -> None:
    turns = [Turn(question="Q1", answer="A1"), Turn(question="Q2", answer="A2")]
    messages = build_messages("Q3", [passage("p")], turns).messages
    assert [(m["role"], m["content"]) for m in messages[1:5]] == [
        ("user", "Q1"), ("assistant", "A1"), ("user", "Q2"), ("assistant", "A2"),
    ]  # fmt: skip
    assert messages[5]["content"].endswith("Question: Q3") and len(messages) == 6


def test_history_keeps_only_the_most_recent_answered_turns_each_cut_to_size() -> None:
    turns = [Turn(question=f"Q{i}", answer=f"A{i}") for i in range(10)] + [Turn(question="failed one", answer="  ")]
    turns.append(Turn(question="long", answer="x" * 500))
    messages = build_messages("now", [], turns, PromptLimits(max_history_turns=3, max_turn_chars=100)).messages
    history = [m["content"] for m in messages[1:-1]]
    assert history[:4] == ["Q8", "A8", "Q9", "A9"]
    assert history[4] == "long" and len(history[5]) == 100 and history[5].endswith("…")
    assert "failed one" not in history


def test_passage_text_is_capped_in_total_and_the_best_passage_is_cut_rather_than_dropped() -> None:
    ps = [passage("a" * 400, position=0), passage("b" * 400, position=1), passage("c" * 400, position=2)]
    prompt = build_messages("q", ps, limits=PromptLimits(max_passage_chars=900))
    assert [p.position for p in prompt.passages] == [0, 1]
    assert "c" * 400 not in prompt.messages[-1]["content"]
    cut = build_messages("q", [passage("z" * 5000)], limits=PromptLimits(max_passage_chars=1000))
    assert len(cut.passages) == 1 and len(cut.passages[0].text) == 1000 and cut.passages[0].text.endswith("…")


def test_zero_history_limit_sends_no_turns() -> None:
    messages = build_messages("q", [], [Turn(question="old", answer="ans")], PromptLimits(max_history_turns=0)).messages
    assert len(messages) == 2
