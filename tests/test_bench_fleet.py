"""The figures of `python -m bench fleet` (bench/fleet/figures.py, summary.py) on hand-made records: who was
live and at work when, rooms doubled, back after a worker was lost, which sentence each caption
transcribes, sentences lost or doubled, the gap a listener heard; and the speech it says."""

from __future__ import annotations

import pytest

from bench.fleet.figures import (
    STALE_S,
    back_after,
    cuts,
    doubled_s,
    expected_chars,
    join_figures,
    live_spans,
    longest_gap,
    placed,
    placement,
    silences,
    spread,
)
from bench.fleet.fleet import sentence_end
from bench.fleet.records import Interpreter, Piece, RoomRecord, words
from bench.fleet.scenarios import LADDER, speech
from bench.fleet.summary import burst_summary, deploy_summary, kill_summary
from bench.harness.model import CHARS_PER_S

# a room's script: three sentences (s, as sent), each transcribed in one piece
SENTENCES = [(1.0, 2.0), (4.0, 5.6), (8.0, 9.2)]


def working(identity: str, joined: float, at_work: float, **kw: object) -> Interpreter:
    return Interpreter(identity, joined, states=[(joined, "initializing"), (at_work, "listening")], **kw)  # type: ignore[arg-type]


def transcript(
    k: int, at: float, sender: str = "s", *, sentences: list[tuple[float, float]] = SENTENCES
) -> Piece:
    """Sentence k's source caption, arriving at `at` (its length that of the sentence's transcript)."""
    start, end = sentences[k]
    return Piece(100 + k, at, sender, expected_chars(end - start))


def translated(k: int, at: float, sender: str = "agent-a") -> Piece:
    return Piece(100 + k, at, sender)


def room(**kw: object) -> RoomRecord:
    defaults: dict[str, object] = {
        "name": "r",
        "requested_at": 0.0,
        "sentences": list(SENTENCES),
        "ended": 12.0,
    }
    return RoomRecord(**(defaults | kw))  # type: ignore[arg-type]


# -- who was live and at work ---------------------------------------------------------------------


def test_at_work_from_listening_and_not_before_standby_ends() -> None:
    assert working("a", 1.0, 1.4).interpreting_since() == 1.4
    waiting = working("b", 1.0, 1.4, standby=[(1.2, True), (3.0, False)])
    assert waiting.interpreting_since() == 3.0
    assert Interpreter("c", 1.0, states=[(1.0, "initializing")]).interpreting_since() is None
    # a taker-over that said "listening" a moment before it said it was in standby
    early = working("d", 1.0, 1.4, standby=[(1.6, True), (3.0, False)])
    assert early.interpreting_since() == 3.0


def test_live_while_in_the_room_without_heartbeat_and_until_stale_with_one() -> None:
    assert live_spans(Interpreter("today", 1.0, left=30.0), until=40.0) == [(1.0, 30.0)]
    beating = Interpreter("new", 1.0, alive=[2.0, 3.0, 4.0])  # killed after its beat at 4.0
    assert live_spans(beating, until=40.0) == [(1.0, 4.0 + STALE_S)]


def test_two_rivals_live_at_once_are_doubled_but_a_handover_pair_is_not() -> None:
    a = Interpreter("a", 1.0, left=6.0)
    b = Interpreter("b", 2.0, left=3.5)  # the loser of a race leaves 1.5 s after joining
    assert doubled_s([a, b], until=10.0) == pytest.approx(1.5)
    new = Interpreter("new", 4.0, handover_from="a")
    assert doubled_s([a, new], until=10.0) == 0.0


def test_a_killed_interpreter_stops_counting_once_its_heartbeat_is_stale() -> None:
    ghost = Interpreter("old", 0.0, left=30.0, alive=[float(t) for t in range(1, 11)])  # killed at ~10.5
    replacement = Interpreter("new", 15.0, alive=[16.0, 17.0])
    assert doubled_s([ghost, replacement], until=20.0) == 0.0
    early = Interpreter("early", 12.0, alive=[13.0])  # joined while the old one still looked live
    assert doubled_s([ghost, early], until=20.0) == pytest.approx(10.0 + STALE_S - 12.0)


# -- joining and coming back ----------------------------------------------------------------------


def test_join_figures_from_the_request_and_lost_when_never_or_too_late() -> None:
    served = join_figures(room(requested_at=0.5, interpreters=[working("a", 1.1, 1.6)]), lost_after=30.0)
    assert (served["joined_s"], served["listening_s"], served["lost"]) == (0.6, 1.1, False)
    late = join_figures(room(interpreters=[working("a", 1.0, 40.0)]), lost_after=30.0)
    assert late["lost"]
    nobody = join_figures(room(), lost_after=30.0)
    assert nobody["lost"] and nobody["joined_s"] is None and nobody["listening_s"] is None


def test_back_after_a_worker_was_lost_counts_only_another_interpreter() -> None:
    old = working("old", 0.5, 1.0, alive=[2.0, 3.0, 4.0, 5.0])
    new = working("new", 9.0, 11.0, alive=[10.0, 11.0])
    assert back_after(room(interpreters=[old, new]), at=5.2) == pytest.approx(5.8)
    assert back_after(room(interpreters=[old]), at=5.2) is None


# -- which sentence, lost, doubled, merged --------------------------------------------------------


def test_a_late_caption_is_placed_by_its_length_not_by_when_it_came() -> None:
    # an interpreter catching up: sentence 0's transcript arrives after sentence 1 was said; then a piece
    # of sentence 1 cut in two
    r = room(
        source=[transcript(0, 6.0), transcript(1, 6.1), Piece(102, 6.4, "s", chars=3)],
        translated=[translated(0, 6.2), translated(1, 6.3), translated(2, 6.5)],
    )
    assert [(t.id, k, exact) for t, k, exact in placed(r)] == [
        (100, 0, True),
        (101, 1, True),
        (102, 1, False),
    ]
    assert placement(r) == {"by_length": 2, "by_order": 1, "unplaced": 0}


def test_a_warped_transcript_follows_the_speech_in_order() -> None:
    # sentence 1's transcript came out two characters short (a jitter buffer hurrying): still sentence 1,
    # not sentence 0 again, which its length would fit better
    r = room(
        source=[transcript(0, 2.3), Piece(101, 6.0, "s", chars=18)],
        translated=[translated(0, 2.9), translated(1, 6.5)],
    )
    assert [k for _, k, _ in placed(r)] == [0, 1]


def test_an_interpreter_cannot_have_transcribed_what_was_said_before_it_joined() -> None:
    late = working("new", 3.0, 3.5)  # joined after sentence 0 was over
    r = room(
        interpreters=[late],
        source=[transcript(0, 6.0)],  # as long as sentence 0, but it never heard it
        translated=[translated(0, 6.2, "new")],
    )
    assert [k for _, k, _ in placed(r)] != [0]


def test_cuts_count_lost_sentences_their_words_doubled_and_merged() -> None:
    r = room(
        source=[transcript(0, 2.3), transcript(1, 5.9), Piece(201, 6.0, "s", expected_chars(1.6))],
        translated=[translated(0, 2.9), translated(1, 6.5), Piece(201, 6.7, "agent-b")],
        merged=[5.7],
    )
    out = cuts(r, since=0.0, until=12.0)
    assert out == {
        "sentences": 3,
        "lost": 1,
        "lost_words": words(1.2),
        "words": sum(words(end - start) for start, end in SENTENCES),
        "doubled": 1,  # sentence 1 translated by a and by b
        "merged": 1,
    }
    assert cuts(r, since=3.0, until=6.0)["sentences"] == 1


# -- gaps -----------------------------------------------------------------------------------------


def test_silences_are_the_stretches_without_sound() -> None:
    assert silences([(1.0, 2.0), (1.5, 3.0), (5.0, 6.0)], 0.0, 8.0) == [(0.0, 1.0), (3.0, 5.0), (6.0, 8.0)]
    assert silences([(0.0, 9.0)], 1.0, 8.0) == []


def test_a_gap_is_silence_heard_that_the_original_did_not_have() -> None:
    # each translation heard 1 s after its sentence, as long: the silences are the original's pauses
    source = [transcript(k, end + 0.3) for k, (_, end) in enumerate(SENTENCES)]
    heard = [(start + 1.0, end + 1.0) for start, end in SENTENCES]
    captions = [translated(k, start + 0.9) for k, (start, _) in enumerate(SENTENCES)]
    steady = room(source=source, translated=captions, loud=heard)
    assert longest_gap(steady, 2.5, 10.5) == pytest.approx(0.0, abs=1e-9)
    # sentence 1 never heard: the silence from sentence 0's translation to sentence 2's holds its 1.6 s
    lost = room(source=source, translated=[captions[0], captions[2]], loud=[heard[0], heard[2]])
    assert longest_gap(lost, 2.5, 10.5) == pytest.approx(1.6)
    # nothing heard after sentence 0: all that was said after it, up to the window's end less the lag
    gone = room(source=source, translated=[captions[0]], loud=[heard[0]])
    assert longest_gap(gone, 2.5, 10.5, lag=1.0) == pytest.approx(1.6 + 1.2)


# -- summaries and goals --------------------------------------------------------------------------


def test_spread_says_never_where_a_room_never_got_there() -> None:
    assert spread([1.0, 2.0, 3.0]) == {"n": 3, "never": 0, "p50": 2.0, "p95": 2.9, "max": 3.0}
    assert spread([1.0, None]) == {"n": 2, "never": 1, "p50": None, "p95": None, "max": None}
    assert spread([1.0, 2.0, 3.0, None])["p50"] == 2.5


def test_burst_goal_needs_every_room_fast_and_none_doubled() -> None:
    quick = [room(name=f"r{i}", interpreters=[working("a", 0.5, 1.0)]) for i in range(4)]
    assert burst_summary(quick, lost_after=30.0)["goal"]["met"]
    slow = [*quick, room(name="late", interpreters=[working("a", 0.5, 5.0)])]
    assert not burst_summary(slow, lost_after=30.0)["goal"]["met"]
    lost = burst_summary([*quick, room(name="lost")], lost_after=30.0)
    assert (lost["lost"], lost["interpreted"], lost["goal"]["met"]) == (1, 4, False)
    assert lost["per_room"][-1]["cuts"]["lost"] == len(SENTENCES)  # nobody interpreted the lost room
    starved = room(name="starved", interpreters=[working("a", 0.5, 1.0)], speaker_behind_s=2.0)
    assert burst_summary([*quick, starved], lost_after=30.0)["rooms_in_trouble"] == ["starved"]


def test_kill_and_deploy_summaries_against_their_goals() -> None:
    source = [transcript(k, end + 0.3) for k, (_, end) in enumerate(SENTENCES)]
    heard = [(start + 1.0, end + 1.0) for start, end in SENTENCES]
    killed = working("old", 0.0, 0.5, alive=[1.0, 2.0, 3.0])  # its machine died at 3.0: stale at 6.5
    back = working("new", 7.0, 7.5, alive=[8.0, 9.0])
    captions = [translated(0, 1.9, "old"), translated(2, 8.9, "new")]  # sentence 1 said in the gap
    r = room(interpreters=[killed, back], source=source, translated=captions, loud=[heard[0], heard[2]])
    out = kill_summary([r], killed_at=3.0, spoke_from=0.0, stopped_at=10.0)
    assert (out["back_s"]["p95"], out["doubled"], out["cuts"]["lost"]) == (4.5, 0, 1)
    assert out["cuts"]["lost_words"] == words(1.6) and out["goal"]["met"]
    # a deploy: the one taking over joins while the old one still works, and takes sentence 1 on
    old = working("old", 0.0, 0.5, alive=[1.0, 2.0, 3.0, 4.0, 5.0], draining=3.0, left=6.0)
    new = working("new", 3.5, 4.0, handover_from="old", alive=[4.0, 5.0, 6.0])
    captions = [translated(0, 1.9, "old"), translated(1, 4.9, "new"), translated(2, 8.9, "new")]
    r = room(interpreters=[old, new], source=source, translated=captions, loud=heard)
    deployed = deploy_summary([r], signalled_at=3.0, spoke_from=0.0, stopped_at=10.0)
    assert (deployed["back_s"]["p95"], deployed["cuts"]["lost"], deployed["gap_s"]) == (1.0, 0, 0.0)
    assert deployed["doubled"] == 0 and deployed["goal"]["met"]
    silent = room(interpreters=[old], source=source[:1], translated=captions[:1], loud=heard[:1])
    assert not deploy_summary([silent], signalled_at=3.0, spoke_from=0.0, stopped_at=10.0)["goal"]["met"]


def test_the_speech_names_each_sentence_by_its_length() -> None:
    timeline = speech(120.0, seed=3)
    lengths = [round((s.end - s.start) * CHARS_PER_S) for s in timeline.sentences]
    assert len(lengths) > 2 * len(LADDER)
    for i in range(len(lengths) - len(LADDER) + 1):
        window = lengths[i : i + len(LADDER)]
        assert min(abs(a - b) for j, a in enumerate(window) for b in window[j + 1 :]) >= 3
    pauses = [b.start - a.end for a, b in zip(timeline.sentences, timeline.sentences[1:], strict=False)]
    assert all(0.999 <= p <= 2.001 for p in pauses)


def test_a_speaker_told_to_stop_finishes_the_sentence_it_is_saying() -> None:
    """Cut off mid-sentence, the piece said is transcribed on its own and fits no sentence of the record
    (a deploy's run counted it a sentence doubled): the speaker stops at the sentence's end instead."""
    timeline = speech(30.0, seed=1)
    first, second = timeline.sentences[:2]
    assert sentence_end(timeline, first.start + 0.25) == first.end
    assert sentence_end(timeline, (first.end + second.start) / 2) is None
    assert sentence_end(timeline, timeline.total_s + 1) is None


def test_a_sentence_sent_stretched_is_placed_by_the_span_it_was_sent_over() -> None:
    """The speaker fell behind while saying sentence 1 (1.3 s of speech sent over 2 s: a machine busy as a
    worker drains): the interpreter's jitter buffer stretched it as much, and its transcript is that long.
    It is sentence 1 (the only one said before the caption came), not a sentence lost."""
    sentences = [(1.0, 2.0), (4.0, 6.0), (8.0, 9.2)]
    stretched = Piece(101, 6.6, "s", chars=expected_chars(2.1))
    r = room(
        sentences=sentences,
        lengths=[1.0, 1.3, 1.2],
        source=[transcript(0, 2.3, sentences=sentences), stretched],
        translated=[translated(0, 2.9), translated(1, 7.0)],
    )
    assert [k for _, k, _ in placed(r)] == [0, 1]
    assert cuts(r, 0.0, 7.0)["lost"] == 0


def test_one_stretched_transcript_and_a_piece_of_it_are_not_a_sentence_heard_twice() -> None:
    """A transcript of sentence 1 as long as the stretched span it was sent over, and a piece after it (the
    jitter buffer split the warped speech): together over 1.5 times its speech, not over 1.5 times what
    arrived."""
    sentences = [(1.0, 2.0), (4.0, 6.0), (8.0, 9.2)]
    r = room(
        sentences=sentences,
        lengths=[1.0, 1.3, 1.2],
        source=[
            transcript(0, 2.3, sentences=sentences),
            Piece(101, 6.6, "s", chars=expected_chars(2.1)),
            Piece(102, 6.9, "s", chars=5),
        ],
        translated=[translated(0, 2.9), translated(1, 7.0), translated(2, 7.2)],
    )
    assert [k for _, k, _ in placed(r)] == [0, 1, 1]
    assert cuts(r, 0.0, 7.0)["doubled"] == 0
