"""Split a ``.txt``/``.md`` document into overlapping chunks that keep their source, position, heading and span.

Pure: text in, chunks out. The document is read as blocks (paragraphs, separated by blank lines) and
headings: Markdown ``#`` lines, setext underlines (``===``/``---``), numbered section lines
(``1. Definitions``, ``5.1. Grants``, ``Section 4``) and short upper-case lines (``TERMS AND
CONDITIONS``). A section is a heading and the blocks under it; small neighbouring sections are
packed together, large ones are cut at paragraph, then line/sentence boundaries, with the tail of one
chunk repeated at the head of the next (``overlap_chars``). Spans index the text exactly as given.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath

__all__ = ["Chunk", "chunk_document", "document_title", "embedding_text"]


@dataclass(frozen=True)
class Chunk:
    source: str  # file name, e.g. "GPL-3.txt"
    position: int  # 0-based index inside the source
    heading: str | None  # nearest heading above (or at the top of) the chunk
    start: int  # character span in the original text: text[start:end] == chunk.text
    end: int
    text: str


@dataclass
class _Block:
    start: int
    end: int
    heading: str | None = None  # set when the block is (or opens with) a heading
    heading_only: bool = False  # the whole block is the heading line(s)


_MD_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.+?)\s*#*\s*$")
_UNDERLINE = re.compile(r"^\s*(=+|-+)\s*$")
_NUMBERED = re.compile(r"^\s*((?:\d+\.)+\d*|\d+\))\s+(\S.*?)\s*$")  # 1.  1.2.  1.2  3)
_SECTION_WORD = re.compile(r"^\s*((?:section|article|chapter|part|appendix)\s+[\dIVXLC]+[.:]?)(?:\s+(.*?))?\s*$", re.I)
_INLINE_TITLE = re.compile(r"^\s*((?:\d+\.)+)\s+([A-Z][^.\n]{2,60}?)\.\s+\S")  # "2. Grant of License. Subject to…"
_NUMBERED_PARAGRAPH = re.compile(r"^\s*(\d+)\.\s+[A-Z]")
_SENTENCE_END = re.compile(r"(?<=[.;:!?])\s+")


def _lines(text: str) -> list[tuple[int, int]]:
    """(start, end) of every line, end excluding the line break."""
    out, pos = [], 0
    for raw in text.splitlines(keepends=True):
        body = raw.rstrip("\r\n")
        out.append((pos, pos + len(body)))
        pos += len(raw)
    return out


def _is_caps_heading(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return 4 <= len(letters) and len(line.strip()) <= 72 and all(c.isupper() for c in letters)


def _is_title_case_heading(line: str) -> bool:
    """A short, one-line block that reads like a title ("Preamble", "How to Apply These Terms")."""
    s = line.strip()
    if not s or len(s) > 60 or s[-1] in ".,;:" or not s[0].isupper() or "@" in s or "(c)" in s.lower():
        return False
    words = [w for w in re.findall(r"[A-Za-z][\w'-]*", s) if len(w) > 3]
    return bool(words) and sum(w[0].isupper() for w in words) / len(words) >= 0.6


def _numbered_heading(line: str, next_line: str | None) -> str | None:
    m = _NUMBERED.match(line)
    if m:
        title = m.group(2)
        standalone = next_line is None or not next_line.strip() or bool(_UNDERLINE.match(next_line))
        if len(title) <= 40 or (standalone and len(title) <= 72):
            return f"{m.group(1)} {title}".rstrip(".")
        return None
    m = _SECTION_WORD.match(line)
    if m and len(line.strip()) <= 72:
        return " ".join(p for p in (m.group(1), m.group(2)) if p).rstrip(".")
    return None


def _paragraph_heading(line: str) -> str | None:
    """A numbered paragraph opens a section: "2. Grant of License. Subject to…" or "6. As an exception…"."""
    inline = _INLINE_TITLE.match(line)
    if inline:
        return f"{inline.group(1)} {inline.group(2)}"
    numbered = _NUMBERED_PARAGRAPH.match(line)
    return f"Section {numbered.group(1)}" if numbered else None


def _blocks(text: str, lines: list[tuple[int, int]], *, markdown: bool) -> list[_Block]:
    """Paragraph blocks; a heading line always starts a block of its own. Markdown: only ``#``/setext headings."""
    blocks: list[_Block] = []
    current: _Block | None = None
    n = len(lines)
    i = 0
    while i < n:
        s, e = lines[i]
        line = text[s:e]
        nxt = text[lines[i + 1][0] : lines[i + 1][1]] if i + 1 < n else None
        if not line.strip() or _UNDERLINE.match(line):  # blank, or a rule that underlines nothing
            current = None
            i += 1
            continue
        heading: str | None = None
        span_end, consumed = e, 1
        md = _MD_HEADING.match(line)
        if md:
            heading = md.group(2)
        elif nxt is not None and _UNDERLINE.match(nxt) and current is None and len(line.strip()) <= 80:
            heading, span_end, consumed = line.strip(), lines[i + 1][1], 2
        elif current is None and not markdown:
            heading = _numbered_heading(line, nxt)
            if heading is None and (nxt is None or not nxt.strip()):
                if _is_caps_heading(line) or _is_title_case_heading(line):
                    heading = line.strip()
        if heading is not None:
            blocks.append(_Block(s, span_end, heading=heading, heading_only=True))
            current = None
            i += consumed
            continue
        if current is None:
            current = _Block(s, e, heading=None if markdown else _paragraph_heading(line))
            blocks.append(current)
        else:
            current.end = e
        i += 1
    return blocks


@dataclass
class _Section:
    heading: str | None
    pieces: list[tuple[int, int]]  # spans, in order

    @property
    def size(self) -> int:
        return self.pieces[-1][1] - self.pieces[0][0] if self.pieces else 0


def _sections(blocks: list[_Block]) -> list[_Section]:
    sections: list[_Section] = []
    pending: list[_Block] = []  # heading-only blocks waiting for their body
    for b in blocks:
        if b.heading_only:
            pending.append(b)
            continue
        if pending or b.heading is not None or not sections:
            heading = b.heading or (pending[-1].heading if pending else None)
            sections.append(_Section(heading, [(p.start, p.end) for p in pending]))
            pending = []
        sections[-1].pieces.append((b.start, b.end))
    if pending:  # headings at the very end with no body: keep their text
        sections.append(_Section(pending[-1].heading, [(p.start, p.end) for p in pending]))
    return sections


def _split_long(text: str, start: int, end: int, max_chars: int) -> list[tuple[int, int]]:
    """Cut one over-long paragraph at sentence ends, then lines, then words."""
    out: list[tuple[int, int]] = []
    cur = start
    while end - cur > max_chars:
        window = text[cur : cur + max_chars]
        cut = -1
        for pattern in (_SENTENCE_END, re.compile(r"\n"), re.compile(r"\s+")):
            hits = [m.end() for m in pattern.finditer(window) if m.end() > max_chars // 3]
            if hits:
                cut = hits[-1]
                break
        cut = cut if cut > 0 else max_chars
        out.append((cur, cur + cut))
        cur += cut
    out.append((cur, end))
    return out


@dataclass
class _Group:
    """The pieces of one future chunk; ``whole`` when it holds only complete sections."""

    headings: list[str]
    pieces: list[tuple[int, int]]
    whole: bool
    section: int  # index of the section it started in

    @property
    def heading(self) -> str | None:
        return " · ".join(self.headings) if self.headings else None

    @property
    def size(self) -> int:
        return self.pieces[-1][1] - self.pieces[0][0]


def _pack(text: str, sections: list[_Section], max_chars: int, min_chars: int) -> list[_Group]:
    """Group pieces into chunks: one section per chunk, small whole neighbours merged, big ones cut."""
    groups: list[_Group] = []
    for index, sec in enumerate(sections):
        pieces: list[tuple[int, int]] = []
        for s, e in sec.pieces:
            pieces.extend(_split_long(text, s, e, max_chars) if e - s > max_chars else [(s, e)])
        if not pieces:
            continue
        prev = groups[-1] if groups else None
        if prev and prev.whole and prev.size < min_chars and pieces[-1][1] - prev.pieces[0][0] <= max_chars:
            prev.pieces.extend(pieces)  # the previous section is too small on its own: this one joins it
            if sec.heading and len(prev.headings) < 3:
                prev.headings.append(sec.heading)
            continue
        current: list[tuple[int, int]] = []
        split = pieces[-1][1] - pieces[0][0] > max_chars
        for p in pieces:
            if current and p[1] - current[0][0] > max_chars:
                groups.append(_Group([sec.heading] if sec.heading else [], current, False, index))
                current = []
            current.append(p)
        groups.append(_Group([sec.heading] if sec.heading else [], current, not split, index))
    return groups


def _overlap_start(text: str, prev_start: int, prev_end: int, overlap_chars: int) -> int:
    """Where the repeated tail of the previous chunk begins: a sentence/line/word boundary near the end."""
    if overlap_chars <= 0:
        return prev_end
    lo = max(prev_start, prev_end - overlap_chars)
    tail = text[lo:prev_end]
    for pattern in (_SENTENCE_END, re.compile(r"\n"), re.compile(r"\s+")):
        m = pattern.search(tail)
        if m and m.end() < len(tail):
            return lo + m.end()
    return lo


def _trim(text: str, start: int, end: int) -> tuple[int, int]:
    while start < end and text[start].isspace():
        start += 1
    while end > start and text[end - 1].isspace():
        end -= 1
    return start, end


def chunk_document(
    source: str, text: str, *, max_chars: int = 1200, overlap_chars: int = 200, min_chars: int | None = None
) -> list[Chunk]:
    """Chunks of at most about ``max_chars`` characters (plus the overlap), in document order."""
    if max_chars < 100:
        raise ValueError("max_chars must be at least 100")
    if not 0 <= overlap_chars < max_chars // 2:
        raise ValueError("overlap_chars must be between 0 and max_chars / 2")
    min_chars = max_chars // 3 if min_chars is None else min_chars
    markdown = PurePath(source).suffix.lower() in (".md", ".markdown")
    blocks = _blocks(text, _lines(text), markdown=markdown)
    groups = _pack(text, _sections(blocks), max_chars, min_chars)
    chunks: list[Chunk] = []
    prev: _Group | None = None
    for group in groups:
        start, end = group.pieces[0][0], group.pieces[-1][1]
        if prev is not None and prev.section == group.section:  # the same section goes on: repeat its tail
            start = min(start, _overlap_start(text, prev.pieces[0][0], prev.pieces[-1][1], overlap_chars))
        s, e = _trim(text, start, end)
        if s < e:
            chunks.append(Chunk(source, len(chunks), group.heading, s, e, text[s:e]))
        prev = group
    return chunks


def document_title(source: str, text: str) -> str:
    """A label for the whole document: its first Markdown heading or short first line, else the file stem."""
    stem = PurePath(source).stem
    for raw in text.splitlines()[:5]:
        line = raw.strip()
        if not line:
            continue
        md = _MD_HEADING.match(raw)
        if md:
            return md.group(2)
        if len(line) <= 80 and "copyright" not in line.lower():
            return line.strip('"')
        break
    return stem


def embedding_text(chunk: Chunk, title: str) -> str:
    """What the embedder sees: the document and section it belongs to, then the chunk itself."""
    stem = PurePath(chunk.source).stem
    label = title if stem.lower() in title.lower() else f"{title} ({stem})"
    head = f"{label} — {chunk.heading}" if chunk.heading else label
    return f"{head}\n{chunk.text}"
