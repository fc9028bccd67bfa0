"""Chunking: headings found, sizes bounded, overlap inside long sections, spans exact, no text lost."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.retriever.chunking import Chunk, chunk_document, document_title, embedding_text


def _covered(text: str, chunks: list[Chunk]) -> bool:
    """Every non-space character of ``text`` lies inside some chunk."""
    mask = [False] * len(text)
    for c in chunks:
        for i in range(c.start, c.end):
            mask[i] = True
    return all(mask[i] or text[i].isspace() for i in range(len(text)))


def _para(words: int, seed: str = "word") -> str:
    return " ".join(f"{seed}{i}" for i in range(words)) + "."


def test_chunk_spans_index_the_original_text_exactly(corpus_dir: Path) -> None:
    for path in sorted(corpus_dir.iterdir()):
        text = path.read_text(encoding="utf-8")
        chunks = chunk_document(path.name, text, max_chars=900, overlap_chars=150)
        assert chunks, path.name
        for c in chunks:
            assert text[c.start : c.end] == c.text
            assert c.source == path.name
        assert [c.position for c in chunks] == list(range(len(chunks)))


def test_every_character_of_every_corpus_document_lands_in_a_chunk(corpus_dir: Path) -> None:
    for path in sorted(corpus_dir.iterdir()):
        text = path.read_text(encoding="utf-8")
        assert _covered(text, chunk_document(path.name, text)), path.name


@pytest.mark.parametrize("max_chars,overlap", [(300, 50), (800, 150), (1200, 200), (2000, 0)])
def test_chunks_never_exceed_max_chars_plus_overlap(corpus_dir: Path, max_chars: int, overlap: int) -> None:
    for path in sorted(corpus_dir.iterdir()):
        text = path.read_text(encoding="utf-8")
        for c in chunk_document(path.name, text, max_chars=max_chars, overlap_chars=overlap):
            assert len(c.text) <= max_chars + overlap, (path.name, c.position, len(c.text))


def test_markdown_headings_label_their_chunks_with_the_nearest_heading() -> None:
    text = f"# Guide\n\nIntro {_para(60)}\n\n## Install\n\n{_para(80, 'inst')}\n\n## Usage\n\n{_para(80, 'use')}\n"
    chunks = chunk_document("guide.md", text, max_chars=400, overlap_chars=50)
    by_word = {w: c.heading for c in chunks for w in ("inst5", "use5") if w in c.text}
    assert by_word == {"inst5": "Install", "use5": "Usage"}
    assert chunks[0].heading == "Guide"


def test_markdown_numbered_lists_are_not_taken_for_sections() -> None:
    text = "# Steps\n\n1. Install it\n2. Run it\n\n1. Another list item\n"
    chunks = chunk_document("steps.md", text)
    assert {c.heading for c in chunks} == {"Steps"}


def test_numbered_caps_and_section_word_headings_are_recognised() -> None:
    text = (
        "TERMS AND CONDITIONS\n\n"
        "1. Definitions.\n\n"
        f"{_para(70, 'def')}\n\n"
        "Section 4\n\n"
        f"{_para(70, 'four')}\n\n"
        "5. Grant of Patent License. Subject to the terms of this License, " + _para(70, "pat") + "\n"
    )
    chunks = chunk_document("license.txt", text, max_chars=450, overlap_chars=50)
    heading_of = {w: c.heading for c in chunks for w in ("def3", "four3", "pat3") if w in c.text}
    assert heading_of == {"def3": "1. Definitions", "four3": "Section 4", "pat3": "5. Grant of Patent License"}
    assert "TERMS AND CONDITIONS" in chunks[0].text  # a heading with no body of its own stays in the text


def test_setext_underlined_headings_are_recognised() -> None:
    text = f"Mozilla Public License\n======================\n\n1. Definitions\n--------------\n\n{_para(40)}\n"
    chunks = chunk_document("mpl.txt", text)
    assert chunks[0].heading == "1. Definitions"


def test_long_sections_are_split_with_overlap_and_keep_their_heading() -> None:
    body = "\n\n".join(_para(30, f"p{i}w") for i in range(12))
    text = f"7. Termination.\n\n{body}\n"
    chunks = chunk_document("t.txt", text, max_chars=500, overlap_chars=120)
    assert len(chunks) >= 3
    assert {c.heading for c in chunks} == {"7. Termination"}
    for a, b in zip(chunks, chunks[1:], strict=False):
        assert b.start < a.end, "consecutive chunks of one section share their boundary text"
        assert a.end - b.start <= 120
        assert text[b.start : a.end] in a.text and text[b.start : a.end] in b.text


def test_separate_sections_do_not_overlap() -> None:
    text = f"1. First Part.\n\n{_para(120, 'a')}\n\n2. Second Part.\n\n{_para(120, 'b')}\n"
    chunks = chunk_document("two.txt", text, max_chars=900, overlap_chars=150)
    first = [c for c in chunks if c.heading == "1. First Part"]
    second = [c for c in chunks if c.heading == "2. Second Part"]
    assert first and second
    assert second[0].start >= first[-1].end
    assert "a1 " not in second[0].text


def test_small_neighbouring_sections_are_packed_and_all_their_headings_kept() -> None:
    text = "1.1. Alpha\n    means a.\n\n1.2. Beta\n    means b.\n\n1.3. Gamma\n    means c.\n"
    chunks = chunk_document("defs.txt", text, max_chars=500)
    assert len(chunks) == 1
    assert chunks[0].heading == "1.1. Alpha · 1.2. Beta · 1.3. Gamma"


def test_a_paragraph_without_breaks_is_cut_at_sentence_ends() -> None:
    text = " ".join(f"Sentence number {i} says something." for i in range(100))
    chunks = chunk_document("wall.txt", text, max_chars=400, overlap_chars=0)
    assert len(chunks) > 5
    assert all(c.text.endswith(".") for c in chunks[:-1])
    assert _covered(text, chunks)


def test_windows_line_endings_keep_exact_spans() -> None:
    text = "1. Scope.\r\n\r\nThis applies.\r\n\r\n2. Terms.\r\n\r\nThese are the terms.\r\n"
    chunks = chunk_document("crlf.txt", text, max_chars=100, overlap_chars=10, min_chars=0)
    assert [c.heading for c in chunks] == ["1. Scope", "2. Terms"]
    assert all(text[c.start : c.end] == c.text for c in chunks)


def test_blank_documents_give_no_chunks() -> None:
    assert chunk_document("empty.txt", "") == []
    assert chunk_document("blank.txt", "\n\n   \n") == []


def test_unreasonable_sizes_are_refused() -> None:
    with pytest.raises(ValueError):
        chunk_document("x.txt", "text", max_chars=10)
    with pytest.raises(ValueError):
        chunk_document("x.txt", "text", max_chars=400, overlap_chars=300)


def test_embedding_text_names_the_document_and_section() -> None:
    text = "GNU GENERAL PUBLIC LICENSE\n\n8. Termination.\n\nYou may not propagate.\n"
    chunk = next(c for c in chunk_document("GPL-3.txt", text, min_chars=0) if c.heading == "8. Termination")
    title = document_title("GPL-3.txt", text)
    assert title == "GNU GENERAL PUBLIC LICENSE"
    assert embedding_text(chunk, title).splitlines()[0] == "GNU GENERAL PUBLIC LICENSE (GPL-3) — 8. Termination"


def test_document_title_falls_back_to_the_file_name() -> None:
    assert document_title("BSD.txt", "Copyright (c) The Regents.\nAll rights reserved.\n") == "BSD"
    assert document_title("notes.md", "# Release notes\n\ntext") == "Release notes"
