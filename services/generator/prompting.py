"""The prompt: instructions, earlier turns, then the numbered passages and the question — bounded in size.

Pure: ``build_messages(question, passages, turns, limits)`` returns the Chat Completions messages.
The passages go with the question (the last user message) so they sit next to what they answer;
earlier turns come before it as user/assistant messages.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from services.core.contracts import Passage, Turn

__all__ = ["PromptLimits", "Prompt", "SYSTEM_INSTRUCTIONS", "build_messages", "format_passages"]

SYSTEM_INSTRUCTIONS = (
    "You are a careful assistant that answers questions about documents.\n"
    "Answer only from the numbered passages given with the question. Cite the passages you use by their "
    "number in square brackets, like [1] or [2][3], right after the statement they support.\n"
    "If the passages do not contain the answer, say plainly that the passages do not contain it; "
    "do not guess and do not use outside knowledge.\n"
    "Answer in the language of the question. Be concise."
)

NO_PASSAGES = "(No passages were found for this question.)"
ELLIPSIS = " …"


@dataclass(frozen=True)
class PromptLimits:
    """Caps that keep the prompt inside the model's context."""

    max_passage_chars: int = 12000  # all passage texts together
    max_history_turns: int = 6  # the most recent turns are kept
    max_turn_chars: int = 2000  # each earlier question and answer is cut to this


@dataclass(frozen=True)
class Prompt:
    messages: list[dict[str, str]]
    passages: tuple[Passage, ...]  # the passages the model saw, numbered from 1 in this order


def _cut(text: str, limit: int) -> str:
    if len(text) <= limit:
        return text
    return text[: max(0, limit - len(ELLIPSIS))].rstrip() + ELLIPSIS


def select_passages(passages: Sequence[Passage], max_chars: int) -> tuple[Passage, ...]:
    """Best first, whole passages while they fit; the first is cut rather than dropped."""
    chosen: list[Passage] = []
    used = 0
    for p in passages:
        if used + len(p.text) <= max_chars:
            chosen.append(p)
            used += len(p.text)
        elif not chosen and max_chars > 0:
            chosen.append(p.model_copy(update={"text": _cut(p.text, max_chars)}))
            break
        else:
            break
    return tuple(chosen)


def _label(n: int, p: Passage) -> str:
    where = f"{p.source}, § {p.heading}" if p.heading else f"{p.source}, part {p.position + 1}"
    return f"[{n}] ({where})"


def format_passages(passages: Sequence[Passage]) -> str:
    if not passages:
        return NO_PASSAGES
    return "\n\n".join(f"{_label(i, p)}\n{p.text.strip()}" for i, p in enumerate(passages, start=1))


def select_turns(turns: Sequence[Turn], limits: PromptLimits) -> list[Turn]:
    """The most recent turns that have an answer, oldest first, each cut to size."""
    answered = [t for t in turns if t.answer.strip()]
    recent = answered[-limits.max_history_turns :] if limits.max_history_turns > 0 else []
    return [
        Turn(question=_cut(t.question, limits.max_turn_chars), answer=_cut(t.answer, limits.max_turn_chars))
        for t in recent
    ]


def build_messages(
    question: str,
    passages: Sequence[Passage],
    turns: Sequence[Turn] = (),
    limits: PromptLimits | None = None,
) -> Prompt:
    """System instructions, earlier turns (user/assistant), then passages + question as the last user message."""
    limits = limits or PromptLimits()
    chosen = select_passages(passages, limits.max_passage_chars)
    messages: list[dict[str, str]] = [{"role": "system", "content": SYSTEM_INSTRUCTIONS}]
    for t in select_turns(turns, limits):
        messages.append({"role": "user", "content": t.question})
        messages.append({"role": "assistant", "content": t.answer})
    body = f"Passages:\n\n{format_passages(chosen)}\n\nQuestion: {question.strip()}"
    messages.append({"role": "user", "content": body})
    return Prompt(messages=messages, passages=chosen)
