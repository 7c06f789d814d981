"""The figures of `python -m bench fleet`, from what each room saw (`bench/fleet/records.py`):

- **joining**: the room's request → its first interpreter of ours joined, and → at work (`lk.agent.state`
  listening, not in standby); a room with none at work within `lost_after` s is **lost**;
- **doubled**: two rival interpreters of ours live at once (live: as issue 20's contract says, its
  `interpreter.alive` heartbeat younger than STALE_S, or joined less than STALE_S ago; one that never sent a
  heartbeat, today's interpreter, counts as live while it is in the room); an interpreter and the one it
  hands over to, or takes over from (`interpreter.handover_from`), are not rivals;
- **back**: after a worker was killed, the moment an interpreter that was not live then is at work;
- **cuts**: each sentence the speaker said (the script is known) is matched to the translations heard for
  it: a translated caption carries its utterance's id, whose source caption's length and arrival say which
  sentence it transcribes (`sentence_of`). A sentence with no translation is **lost** (its words counted);
  one translated by two interpreters, together well over its length, is **doubled**; utterances the
  interpreter's queue folded into another are **merged** (from the worker's own records);
- **gaps**: each silence the listener heard, less the silence the original had there: the source between
  the sentence heard before the silence and the one heard after it (its translation starting where the
  silence ends), or, without one, the heard time shifted back by the usual lag. The longest is the gap a
  listener noticed; the same in a quiet stretch before the event shows what is usual.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from agent.room.presence import STALE_S
from bench.fleet.records import Interpreter, Piece, RoomRecord, words
from bench.harness.model import CHARS_PER_S
from bench.harness.stats import quantile

CAPTION_AFTER_S = 0.2  # a source caption arrives at least this long after the speech it transcribes began
LENGTH_SLACK = 1  # characters: a transcript's length says its speech's to within one
LADDER_STEP_CHARS = 3  # the workload's sentence lengths, in transcript characters, are this far apart
USUAL_S = 1.5  # a sentence's transcript arrives within this of its end, as a rule
LATE_SCALE_S = 5.0  # a transcript this much later than usual costs as much as a length one step off
PART_COST, SPLIT_COST, SKIP_COST = 0.5, 0.5, 3.0  # a piece of a sentence cut in two; a piece left out
ONSET_WINDOW_S = (-0.6, 0.1)  # a translation's audio starts this long after its caption (from, to)
DOUBLED_FACTOR = 1.5  # translations by two interpreters adding up to this much of a sentence: heard twice

Span = tuple[float, float]


def union(spans: Iterable[Span]) -> list[Span]:
    out: list[Span] = []
    for a, b in sorted(s for s in spans if s[1] > s[0]):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def live_spans(i: Interpreter, until: float) -> list[Span]:
    """When the interpreter was live, up to `until` (or until it left)."""
    end = min(until, i.left) if i.left is not None else until
    if not i.alive:  # no heartbeat ever: live while in the room
        return union([(i.joined, end)])
    beats = [(i.joined, i.joined + STALE_S), *((t, t + STALE_S) for t in i.alive)]
    return union((a, min(b, end)) for a, b in beats)


def rivals(a: Interpreter, b: Interpreter) -> bool:
    return a.handover_from != b.identity and b.handover_from != a.identity


def doubled_s(interpreters: Sequence[Interpreter], until: float) -> float:
    """The longest stretch two rival interpreters of ours were live at once (0: never)."""
    longest = 0.0
    for k, a in enumerate(interpreters):
        for b in interpreters[k + 1 :]:
            if not rivals(a, b):
                continue
            both = [
                (max(x0, y0), min(x1, y1))
                for x0, x1 in live_spans(a, until)
                for y0, y1 in live_spans(b, until)
            ]
            longest = max([longest, *(y - x for x, y in union(both))])
    return longest


def join_figures(room: RoomRecord, lost_after: float) -> dict[str, Any]:
    """The room's request → its interpreter joined, → at work; lost; doubled."""
    ours = room.interpreters
    joined = min((i.joined for i in ours), default=None)
    working = min((t for i in ours if (t := i.interpreting_since()) is not None), default=None)
    listening_s = None if working is None else working - room.requested_at
    return {
        "room": room.name,
        "joined_s": None if joined is None else round(joined - room.requested_at, 3),
        "listening_s": None if listening_s is None else round(listening_s, 3),
        "lost": listening_s is None or listening_s > lost_after,
        "interpreters": len(ours),
        "doubled_s": round(doubled_s(ours, room.ended), 3),
    }


def back_after(room: RoomRecord, at: float) -> float | None:
    """Seconds from `at` (a worker killed) until an interpreter that was not live then is at work (None:
    never, within the observation)."""
    gone = {i.identity for i in room.interpreters if any(a <= at <= b for a, b in live_spans(i, room.ended))}
    times = [
        max(t, at)
        for i in room.interpreters
        if i.identity not in gone and (t := i.interpreting_since()) is not None
    ]
    return round(min(times) - at, 3) if times else None


def expected_chars(length_s: float) -> int:
    """How long the fake STT's transcript of `length_s` of speech is (bench/harness/modelled_providers.py)."""
    return max(5, round(length_s * CHARS_PER_S))


def piece_cost(room: RoomRecord, piece: Piece, k: int, heard_from: float, *, part: bool) -> float:
    """How unlikely it is that `piece` transcribes sentence k (inf: it cannot, the sentence had not begun
    when the caption came, or was over before its interpreter joined); `part`: another piece before it
    transcribed the same sentence. A whole sentence said before is one as long as the piece (a length off
    costs a third a character, as the jitter buffer can warp speech; as long as the span it was sent over
    costs nothing), ended not much longer before than usual; a part of a sentence is no longer than it."""
    start, end = room.sentences[k]
    if start > piece.at - CAPTION_AFTER_S or end < heard_from:
        return math.inf
    expected = expected_chars(room.length(k))
    # a speaker behind real time sends a sentence over a longer span, and the jitter buffer stretches it
    stretched = max(expected, expected_chars(end - start))
    off = max(expected - piece.chars, piece.chars - stretched, 0)
    fits = piece.chars <= stretched + LENGTH_SLACK
    late = max(0.0, piece.at - end - USUAL_S) / LATE_SCALE_S
    if part or end > piece.at:  # a part of it (not over when the caption came: cut by a dropout)
        return (PART_COST if fits else math.inf) + late
    return (0.0 if off <= LENGTH_SLACK else off / LADDER_STEP_CHARS) + late


def align(room: RoomRecord, pieces: Sequence[Piece], heard_from: float) -> list[int | None]:
    """The sentence each of one interpreter's source captions (in the order it transcribed them)
    transcribes, or None: the cheapest assignment (`piece_cost`) that follows the speech in order, a piece
    left unplaced costing SKIP_COST, one more piece of the same sentence SPLIT_COST."""
    best: dict[int, tuple[float, list[int | None]]] = {-1: (0.0, [])}  # last sentence → cost, path
    for piece in pieces:
        after: dict[int, tuple[float, list[int | None]]] = {}
        for state, (cost, path) in best.items():
            steps: list[tuple[int, float, int | None]] = [(state, SKIP_COST, None)]
            for k in range(max(state, 0), len(room.sentences)):
                again = k == state
                step = piece_cost(room, piece, k, heard_from, part=again) + (SPLIT_COST if again else 0.0)
                steps.append((k, step, k))
            for to, step, placed_at in steps:
                if cost + step < after.get(to, (math.inf, []))[0]:
                    after[to] = (cost + step, [*path, placed_at])
        best = after
    return min(best.values(), key=lambda v: v[0])[1]


def placed(room: RoomRecord) -> list[tuple[Piece, int | None, bool]]:
    """Each translation heard, the sentence it translates (None: none fits) and whether the length of its
    source caption said so exactly: each interpreter's in turn (`align`), from when it joined."""
    source = {p.id: p for p in room.source}
    joined = {i.identity: i.joined for i in room.interpreters}
    by_sender: dict[str, list[Piece]] = {}
    for t in sorted(room.translated, key=lambda t: t.id):
        if t.id in source:
            by_sender.setdefault(t.sender, []).append(t)
    out = []
    for sender, pieces in by_sender.items():
        sources = [source[t.id] for t in pieces]
        sentences = align(room, sources, joined.get(sender, -math.inf))
        for t, src, k in zip(pieces, sources, sentences, strict=True):
            exact = k is not None and abs(expected_chars(room.length(k)) - src.chars) <= LENGTH_SLACK
            out.append((t, k, exact))
    return out


def translations(room: RoomRecord) -> list[tuple[Piece, int]]:
    """Each translation heard, with the sentence it translates (those that cannot be placed are left out)."""
    return [(t, k) for t, k, _ in placed(room) if k is not None]


def placement(room: RoomRecord) -> dict[str, int]:
    """How the translations were placed: by their source's length, by order and time alone, not at all."""
    found = placed(room)
    return {
        "by_length": sum(1 for _, _, exact in found if exact),
        "by_order": sum(1 for _, k, exact in found if k is not None and not exact),
        "unplaced": sum(1 for _, k, _ in found if k is None),
    }


def coverage(room: RoomRecord) -> dict[int, dict[str, float]]:
    """Per sentence, per interpreter, the seconds of its speech whose translation arrived."""
    source = {p.id: p for p in room.source}
    out: dict[int, dict[str, float]] = {}
    for t, k in translations(room):
        by = out.setdefault(k, {})
        by[t.sender] = by.get(t.sender, 0.0) + source[t.id].chars / CHARS_PER_S
    return out


def sent_length(room: RoomRecord, k: int) -> float:
    """Sentence k's length as the speaker sent it: its speech, or the longer span a speaker behind real
    time took to send it."""
    start, end = room.sentences[k]
    return max(room.length(k), end - start)


def cuts(room: RoomRecord, since: float, until: float) -> dict[str, int]:
    """The sentences that ended within [since, until]: how many, lost (and their words), doubled; and the
    utterances merged into another meanwhile."""
    scored = [k for k, (_, end) in enumerate(room.sentences) if since <= end <= until]
    cover = coverage(room)
    lost = [k for k in scored if k not in cover]
    # the transcripts' lengths measure the audio as it arrived: a sentence sent stretched arrives as long
    doubled = [k for k in scored if sum(cover.get(k, {}).values()) >= DOUBLED_FACTOR * sent_length(room, k)]
    return {
        "sentences": len(scored),
        "lost": len(lost),
        "lost_words": sum(words(room.length(k)) for k in lost),
        "words": sum(words(room.length(k)) for k in scored),
        "doubled": len(doubled),
        "merged": sum(1 for t in room.merged if since <= t <= until),
    }


def source_silence(sentences: Sequence[Span], a: float, b: float) -> float:
    """The silence in the original between a and b (0 if b is not after a)."""
    if b <= a:
        return 0.0
    voiced = sum(max(0.0, min(b, end) - max(a, start)) for start, end in sentences)
    return b - a - voiced


def usual_lag(room: RoomRecord) -> float:
    """The heard time less the source time of a sentence's start: its first translation's caption less the
    sentence's start, at the median (1 s when nothing was heard)."""
    first: dict[int, float] = {}
    for t, k in translations(room):
        first[k] = min(first.get(k, math.inf), t.at)
    lags = [at - room.sentences[k][0] for k, at in first.items()]
    return quantile(lags, 50) or 1.0


def silences(loud: Sequence[Span], since: float, until: float) -> list[Span]:
    """The stretches within [since, until] when the listener heard nothing."""
    out, at = [], since
    for a, b in union(loud):
        if a > at and a > since:
            out.append((at, min(a, until)))
        at = max(at, b)
        if at >= until:
            return [s for s in out if s[1] > s[0]]
    if at < until:
        out.append((at, until))
    return [s for s in out if s[1] > s[0]]


def gaps(room: RoomRecord, since: float, until: float, lag: float) -> list[tuple[float, float, float]]:
    """Each silence heard within [since, until] as (from, to, what the original did not have of it)."""
    placed = sorted(translations(room), key=lambda tk: tk[0].at)
    out = []
    for a, b in silences(room.loud, since, until):
        before = [k for t, k in placed if t.at <= a]
        src_a = room.sentences[before[-1]][1] if before else a - lag
        lo, hi = ONSET_WINDOW_S
        after = [(abs(t.at - (b - 0.15)), k) for t, k in placed if b + lo <= t.at <= b + hi]
        src_b = room.sentences[min(after)[1]][0] if after and b < until else b - lag
        out.append((a, b, b - a - source_silence(room.sentences, src_a, src_b)))
    return out


def longest_gap(room: RoomRecord, since: float, until: float, lag: float | None = None) -> float:
    """The longest silence heard within [since, until] that the original did not have (s)."""
    found = gaps(room, since, until, usual_lag(room) if lag is None else lag)
    return round(max((g for _, _, g in found), default=0.0), 3)


def spread(values: Sequence[float | None]) -> dict[str, Any]:
    """p50, p95 and max of per-room seconds, where None is "never" (a room that never got there): a figure
    that falls on a never is None too. `n` rooms, `never` of them never."""
    ordered = sorted(math.inf if v is None else v for v in values)
    out: dict[str, Any] = {"n": len(ordered), "never": sum(1 for v in values if v is None)}
    for name, q in (("p50", 50), ("p95", 95), ("max", 100)):
        if not ordered:
            out[name] = None
            continue
        pos = (len(ordered) - 1) * q / 100
        lo, hi = math.floor(pos), math.ceil(pos)
        if math.isinf(ordered[hi]):
            out[name] = None
        else:
            out[name] = round(ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo), 3)
    return out


def totals(rows: Iterable[dict[str, int]]) -> dict[str, int]:
    """The cuts of several rooms added up."""
    out: dict[str, int] = {}
    for row in rows:
        for key, value in row.items():
            out[key] = out.get(key, 0) + value
    return out
