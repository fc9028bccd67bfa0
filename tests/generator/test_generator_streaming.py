"""The delta coalescer: first text at once, then at most every flush_ms or flush_chars; offsets in code points."""

from __future__ import annotations

from services.generator.streaming import Coalescer, Delta


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(flush_ms: float = 50, flush_chars: int = 256) -> tuple[Coalescer, Clock]:
    clock = Clock()
    return Coalescer(flush_ms=flush_ms, flush_chars=flush_chars, clock=clock), clock


def test_first_text_goes_out_at_once() -> None:
    c, _ = make()
    assert c.add("Hel") == Delta(seq=0, offset=0, text="Hel")
    assert c.due_at() is None


def test_empty_pieces_are_ignored_and_do_not_count_as_first_text() -> None:
    c, _ = make()
    assert c.add("") is None and c.flush() is None
    assert c.add("x") == Delta(0, 0, "x")


def test_later_text_is_held_until_the_flush_interval() -> None:
    c, clock = make(flush_ms=50)
    c.add("a")
    clock.now += 0.01
    assert c.add("b") is None
    clock.now += 0.01
    assert c.add("c") is None
    assert c.due_at() == 100.05
    clock.now = 100.05
    assert c.flush() == Delta(seq=1, offset=1, text="bc")
    assert c.due_at() is None and c.flush() is None


def test_text_after_a_quiet_interval_goes_out_at_once() -> None:
    c, clock = make(flush_ms=50)
    c.add("a")
    clock.now += 0.2
    assert c.add("b") == Delta(1, 1, "b")


def test_enough_characters_go_out_before_the_interval() -> None:
    c, clock = make(flush_ms=50, flush_chars=5)
    c.add("a")
    clock.now += 0.001
    assert c.add("bcd") is None
    assert c.add("ef") == Delta(1, 1, "bcdef")


def test_offsets_and_lengths_count_code_points_not_bytes() -> None:
    c, clock = make(flush_ms=0)
    pieces = ["漢字", "🙂👍🏽", "e\u0301", "a"]
    out = []
    for p in pieces:
        clock.now += 1
        d = c.add(p)
        assert d is not None
        out.append(d)
    assert [d.offset for d in out] == [0, 2, 5, 7]
    assert [d.seq for d in out] == [0, 1, 2, 3]
    assert c.emitted_chars == len("".join(pieces)) == 8


def test_concatenated_deltas_equal_the_input_whatever_the_timing() -> None:
    c, clock = make(flush_ms=50, flush_chars=7)
    text = "Ein Text mit Ümlauten, 漢字 und Emoji 🙂 über mehrere Stücke verteilt."
    deltas = []
    for i, ch in enumerate(text):
        clock.now += 0.003 * (i % 5)
        d = c.add(ch)
        if d:
            deltas.append(d)
    tail = c.flush()
    if tail:
        deltas.append(tail)
    assert "".join(d.text for d in deltas) == text
    assert [d.seq for d in deltas] == list(range(len(deltas)))
    assert all(d.offset == sum(len(x.text) for x in deltas[: d.seq]) for d in deltas)
    assert 1 < len(deltas) < len(text)
