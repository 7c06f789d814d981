"""Text between the LLM and the TTS: cutting the streamed translation into clauses, and hygiene.

Nothing here strips non-ASCII: every non-Latin target language needs it.
"""

from __future__ import annotations

import re
import unicodedata

# sentence ends; CJK and Devanagari/Arabic marks need no space after them
_SENTENCE_END = ".!?…"
_SENTENCE_END_NO_SPACE = "。！？؟।"
_CLAUSE_MARKS = ",;:、،，；：—"
_CLOSERS = "\"'”’»)]」』"

_PREAMBLE_RE = re.compile(
    r"^\s*(?:(?:here\s+is\s+the\s+|here's\s+the\s+)?translation(?:\s+(?:in|into|to)\s+[\w\- ]{2,20})?"
    r"|translated(?:\s+text)?|traducci[óo]n|traduction|[ÜU]bersetzung|output|answer)\s*[:：]\s*",
    re.IGNORECASE,
)
_TAG_RE = re.compile(r"</?[A-Za-z][\w\-]*(?:\s[^<>]*)?/?>")
_MD_RE = re.compile(r"(\*\*|__|\*|`+|^#{1,6}\s+|^\s*[-*+>]\s+|^\s*\d+\.\s+)", re.MULTILINE)
_WRAPPING_QUOTES = (('"', '"'), ("“", "”"), ("«", "»"), ("'", "'"), ("„", "“"), ("「", "」"))
_WS_RE = re.compile(r"\s+")


class ClauseSplitter:
    """Cuts streamed text into clauses as tokens arrive, so TTS can start before the LLM ends.

    A clause ends at a sentence end (followed by a space, or a CJK-style stop), or at a comma-like
    mark once the clause holds at least `min_chars` (the first clause of a translation may be
    shorter: `first_min_chars`), or at a space once it exceeds `max_chars`.
    """

    def __init__(self, *, first_min_chars: int = 12, min_chars: int = 28, max_chars: int = 160):
        self._first_min = first_min_chars
        self._min = min_chars
        self._max = max_chars
        self._buf = ""
        self._emitted = 0

    def push(self, text: str) -> list[str]:
        self._buf += text
        out: list[str] = []
        while (cut := self._find_cut()) is not None:
            clause, self._buf = self._buf[:cut].strip(), self._buf[cut:].lstrip()
            if clause:
                out.append(clause)
                self._emitted += 1
        return out

    def flush(self) -> list[str]:
        clause, self._buf = self._buf.strip(), ""
        if clause:
            self._emitted += 1
            return [clause]
        return []

    def _find_cut(self) -> int | None:
        buf = self._buf
        minimum = self._first_min if self._emitted == 0 else self._min
        for i, ch in enumerate(buf):
            nxt = buf[i + 1] if i + 1 < len(buf) else ""
            if ch in _SENTENCE_END_NO_SPACE:
                j = self._past_closers(i + 1)
                return j
            if ch in _SENTENCE_END and nxt:
                j = self._past_closers(i + 1)
                if j < len(buf) and buf[j].isspace() and not _is_abbreviation(buf[: i + 1]):
                    return j
            if ch in _CLAUSE_MARKS and i + 1 >= minimum and nxt.isspace():
                return i + 1
        if len(buf) > self._max:
            space = buf.rfind(" ", 0, self._max)
            if space > minimum:
                return space
        return None

    def _past_closers(self, j: int) -> int:
        while j < len(self._buf) and self._buf[j] in _CLOSERS:
            j += 1
        return j


_ABBREVIATIONS = {"mr.", "mrs.", "ms.", "dr.", "sr.", "sra.", "st.", "etc.", "e.g.", "i.e.", "vs.", "p.ej."}


def _is_abbreviation(text: str) -> bool:
    last = text.rsplit(None, 1)[-1].lower() if text.strip() else ""
    return last in _ABBREVIATIONS


class ReasoningFilter:
    """Drops `<think>…</think>` (or `<reasoning>…`) blocks from streamed text, across token edges."""

    _OPEN = ("<think>", "<reasoning>")
    _CLOSE = ("</think>", "</reasoning>")

    def __init__(self) -> None:
        self._buf = ""
        self._inside = False

    def push(self, text: str) -> str:
        self._buf += text
        out: list[str] = []
        while self._buf:
            tags = self._CLOSE if self._inside else self._OPEN
            lower = self._buf.lower()
            hits = [(lower.find(t), t) for t in tags if lower.find(t) != -1]
            if hits:
                idx, tag = min(hits)
                if not self._inside:
                    out.append(self._buf[:idx])
                self._buf = self._buf[idx + len(tag) :]
                self._inside = not self._inside
                continue
            # keep a possible partial tag at the end for the next push
            keep = _partial_tag_suffix(lower, tags)
            if not self._inside:
                out.append(self._buf[: len(self._buf) - keep])
            self._buf = self._buf[len(self._buf) - keep :] if keep else ""
            break
        return "".join(out)

    def flush(self) -> str:
        rest, self._buf = self._buf, ""
        return "" if self._inside else rest


def _partial_tag_suffix(lower: str, tags: tuple[str, ...]) -> int:
    best = 0
    for tag in tags:
        for n in range(min(len(tag) - 1, len(lower)), 0, -1):
            if lower.endswith(tag[:n]):
                best = max(best, n)
                break
    return best


def clean_clause(text: str, *, first: bool) -> str:
    """Make one clause fit to be spoken: no markup, no preamble, no wrapping quotes.

    Control characters go; letters of every script stay.
    """
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    text = _TAG_RE.sub(" ", text)
    text = _MD_RE.sub("", text)
    if first:
        text = _PREAMBLE_RE.sub("", text, count=1)
    text = _WS_RE.sub(" ", text).strip()
    for left, right in _WRAPPING_QUOTES:
        if len(text) >= 2 and text.startswith(left) and text.endswith(right):
            text = text[len(left) : -len(right)].strip()
    if first and text[:1] in {'"', "“", "«", "„", "「"} and text.count(text[0]) == 1:
        text = text[1:].lstrip()
    if text[-1:] in {'"', "”", "»", "」"} and not _has_opening(text):
        text = text[:-1].rstrip()
    return text


def _has_opening(text: str) -> bool:
    return any(o in text[:-1] for o in ('"', "“", "«", "„", "「"))


def is_speakable(text: str) -> bool:
    """True if the text holds at least one letter or digit (of any script)."""
    return any(unicodedata.category(ch)[0] in "LN" for ch in text)


_FILLERS = {
    "uh", "um", "uhm", "umm", "er", "erm", "ah", "eh", "hmm", "mm", "mhm", "hm", "oh",
    "euh", "ehm", "äh", "ähm", "eto", "ano",
}  # fmt: skip


def is_substantive(transcript: str) -> bool:
    """False for empty, punctuation-only and filler-only STT segments."""
    words = [w.strip(".,!?;:…-–—\"'()¿¡").lower() for w in transcript.split()]
    words = [w for w in words if w]
    if not words or not any(is_speakable(w) for w in words):
        return False
    return not all(w in _FILLERS for w in words)


def ends_sentence(text: str) -> bool:
    """True if the text ends a sentence: its last mark (past closing quotes and brackets) is a sentence end
    of any script (. ! ? … 。 ！ ？ ؟ ।), not the dot of an abbreviation ("Mr.")."""
    text = text.rstrip().rstrip(_CLOSERS).rstrip()
    if not text or text[-1] not in _SENTENCE_END + _SENTENCE_END_NO_SPACE + "‽｡":
        return False
    return text[-1] != "." or not _is_abbreviation(text)


def ends_clause(text: str) -> bool:
    """True if the text ends a clause: a sentence (`ends_sentence`), or its last mark is a comma, semicolon,
    colon or dash of any script (, ; : — 、 ， ； ：)."""
    bare = text.rstrip().rstrip(_CLOSERS).rstrip()
    return bool(bare) and (bare[-1] in ",;:—、，；：،" or ends_sentence(text))


_PIECE_END = re.compile(r"[.!?…。！？؟।]+[\"'”’»)\]]*(?=\s)")


def split_source(text: str, max_chars: int = 600) -> list[str]:
    """Cut a long transcript into pieces of at most `max_chars` at sentence ends (at spaces when a
    sentence is longer), so each is one bounded LLM request and nothing is dropped."""
    text = text.strip()
    if len(text) <= max_chars:
        return [text] if text else []
    sentences, start = [], 0
    for end in _PIECE_END.finditer(text):
        sentences.append(text[start : end.end()].strip())
        start = end.end()
    sentences = [s for s in [*sentences, text[start:].strip()] if s]
    pieces: list[str] = []
    current = ""
    for sentence in sentences:
        while len(sentence) > max_chars:
            cut = sentence.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            head, sentence = sentence[:cut].strip(), sentence[cut:].strip()
            if current:
                pieces.append(current)
                current = ""
            pieces.append(head)
        if current and len(current) + 1 + len(sentence) > max_chars:
            pieces.append(current)
            current = ""
        current = f"{current} {sentence}".strip()
    if current:
        pieces.append(current)
    return pieces


_KEEP_FORMAT = {"\u200c", "\u200d"}  # zero-width (non-)joiners: part of how some scripts are written
_INVISIBLE = {"Cc", "Cf", "Cs", "Co", "Cn"}


def clean_transcript(text: str) -> str:
    """A transcript fit for captions and the prompt: no control or invisible formatting characters
    (escape sequences, bidi overrides, NULs), whitespace collapsed. Words of every script and any
    markup-looking text stay as they are: captions are text, and the prompt escapes tags."""
    kept = (
        " " if ch.isspace() else ch
        for ch in text
        if ch in _KEEP_FORMAT
        or ch.isspace()
        or unicodedata.category(ch) not in ("Cc", "Cf", "Cs", "Co", "Cn")
    )
    return _WS_RE.sub(" ", "".join(kept)).strip()
