"""Splitting a document into chunks: markdown by heading, then by a token budget with overlap.

Pure functions, no I/O. Offsets are Python string indices (Unicode code
points) into the document's content, and every chunk's text is exactly
``content[start:end]``, so a caller can always find a chunk in its document.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

DEFAULT_CHUNK_TOKENS = 256
DEFAULT_OVERLAP_TOKENS = 32
MIN_CHUNK_TOKENS = 16
MAX_CHUNK_TOKENS = 2048

# A token: a run of word characters, or of other non-space characters. Close
# to (a little under) a subword tokenizer's count for English prose, and
# cheap enough for megabytes.
_TOKEN = re.compile(r"\w+|[^\w\s]+")
# An ATX heading (CommonMark: up to 3 spaces of indent, 1-6 #, then a space or
# the line's end); the optional closing #s are not part of the title.
_HEADING = re.compile(r"^ {0,3}(#{1,6})(?:[ \t]+(.*?))?(?:[ \t]+#+)?[ \t]*$")
# A code fence opens or closes: headings inside fenced code are code.
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
# A token-ending character that ends a sentence (no other punctuation follows).
_SENTENCE_END = re.compile(r"[.!?:;](?![^\w\s])")
# A blank line (spaces and tabs allowed on it): a paragraph's end.
_PARAGRAPH = re.compile(r"\n[ \t]*\r?\n")


@dataclass(frozen=True)
class ChunkSpan:
    """A chunk: where it is in the content, the headings it is under, its size."""

    start: int
    end: int
    heading_path: tuple[str, ...]
    token_count: int


@dataclass(frozen=True)
class _Section:
    start: int
    end: int
    heading_path: tuple[str, ...]
    # Whether it holds anything but its heading line.
    has_body: bool


def default_overlap(chunk_tokens: int) -> int:
    """The overlap when the caller sets none: 32 tokens, at most a quarter of the budget."""
    return min(DEFAULT_OVERLAP_TOKENS, chunk_tokens // 4)


def markdown_sections(content: str) -> list[_Section]:
    """``content`` cut before each heading (outside code fences), with heading paths."""
    sections: list[_Section] = []
    stack: list[tuple[int, str]] = []
    start = 0
    path: tuple[str, ...] = ()
    body = False
    fence = ""
    pos = 0
    for line in content.splitlines(keepends=True):
        text = line.rstrip("\r\n")
        opened = _FENCE.match(text)
        if fence:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = ""
            body = body or bool(text.strip())
        elif opened:
            fence = opened.group(1)
            body = True
        elif (heading := _HEADING.match(text)) is not None:
            if pos > start:
                sections.append(_Section(start, pos, path, body))
            level = len(heading.group(1))
            title = (heading.group(2) or "").strip()
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, title))
            path = tuple(t for _, t in stack)
            start, body = pos, False
        else:
            body = body or bool(text.strip())
        pos += len(line)
    if pos > start:
        sections.append(_Section(start, pos, path, body))
    return sections


def _merged(sections: list[_Section]) -> list[_Section]:
    """Heading-only sections joined to the section after them (a title and its first
    subsection make one chunk, under the subsection's path)."""
    merged: list[_Section] = []
    carry: int | None = None
    for s in sections:
        start = s.start if carry is None else carry
        if not s.has_body:
            carry = start
            continue
        merged.append(_Section(start, s.end, s.heading_path, True))
        carry = None
    if carry is not None:
        last = sections[-1]
        merged.append(_Section(carry, last.end, last.heading_path, False))
    return merged


def _window_end(content: str, tokens: list[tuple[int, int]], low: int, high: int) -> int:
    """Where a window of tokens[..:high] ends best, after ``low``: after the last blank
    line between tokens[low] and tokens[high], else after the last token in that
    range that ends a sentence, else at ``high``. Scans only the window's text."""
    region = (tokens[low][0], tokens[high][0])
    last = None
    for last in _PARAGRAPH.finditer(content, *region):  # noqa: B007 - the last one counts
        pass
    if last is not None:
        return bisect.bisect_right(tokens, last.start(), lo=low, hi=high, key=lambda t: t[0])
    for last in _SENTENCE_END.finditer(content, region[0], tokens[high - 1][1]):  # noqa: B007
        pass
    if last is not None:
        return bisect.bisect_right(tokens, last.start(), lo=low, hi=high, key=lambda t: t[0])
    return high


def _split(content: str, section: _Section, budget: int, overlap: int) -> list[ChunkSpan]:
    """``section`` cut into windows of at most ``budget`` tokens, each repeating the last
    ``overlap`` of the one before; a window ends at a paragraph or sentence end in
    its second half when there is one (``_window_end``)."""
    # (start, end) pairs: a million Match objects kept alive cost 3x their scan in
    # garbage collection.
    tokens = [m.span() for m in _TOKEN.finditer(content, section.start, section.end)]
    if not tokens:
        return []
    spans: list[ChunkSpan] = []
    i = 0
    while True:
        high = min(i + budget, len(tokens))
        end = high
        if high < len(tokens):
            end = _window_end(content, tokens, i + budget // 2, high)
        start = section.start if i == 0 else tokens[i][0]
        stop = section.end if end == len(tokens) else tokens[end - 1][1]
        spans.append(ChunkSpan(start, stop, section.heading_path, end - i))
        if end == len(tokens):
            return spans
        i = max(end - overlap, i + 1)


def _trimmed(content: str, span: ChunkSpan) -> ChunkSpan:
    """``span`` without leading and trailing whitespace."""
    start, end = span.start, span.end
    while start < end and content[start].isspace():
        start += 1
    while end > start and content[end - 1].isspace():
        end -= 1
    return ChunkSpan(start, end, span.heading_path, span.token_count)


def chunk(
    content: str, *, markdown: bool, chunk_tokens: int, overlap_tokens: int
) -> list[ChunkSpan]:
    """The chunks of ``content``: sections (markdown headings) split to the budget."""
    if markdown:
        sections = _merged(markdown_sections(content))
    else:
        sections = [_Section(0, len(content), (), True)]
    spans: list[ChunkSpan] = []
    for section in sections:
        for span in _split(content, section, chunk_tokens, overlap_tokens):
            spans.append(_trimmed(content, span))
    return spans


def embedding_text(heading_path: Sequence[str], text: str) -> str:
    """What the server embeds for a chunk: its headings give it context."""
    return f"{' > '.join(heading_path)}\n\n{text}" if heading_path else text


def count_tokens(text: str) -> int:
    """How many tokens ``text`` holds (as chunking counts them)."""
    return sum(1 for _ in _TOKEN.finditer(text))


def first_heading(content: str) -> str:
    """The first markdown heading's title, or ""."""
    for s in markdown_sections(content):
        if s.heading_path:
            return s.heading_path[-1]
    return ""
