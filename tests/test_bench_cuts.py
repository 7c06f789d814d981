"""What the cuts did to the sentences (`bench/lag/cuts.py`), on constructed timelines and piece spans: pieces
per sentence, words per piece, and cuts mid-clause against cuts at a clause's end."""

from __future__ import annotations

import random

import pytest

from bench.harness.model import WORDS_PER_S
from bench.harness.speech import Sentence, dialogue_timeline, monologue_timeline
from bench.lag.cuts import CLAUSE_END_TOLERANCE_S, cuts, mid_clause, phrase_spans, pieces_per_sentence

# one monologue sentence of three phrases joined by breaths, then a 450 ms pause and a one-phrase sentence
PHRASES = [(0.5, 3.0), (3.1, 6.0), (6.2, 9.0), (9.45, 12.0)]
SENTENCES = [Sentence(0.5, 9.0), Sentence(9.45, 12.0)]


def test_phrase_spans_are_start_and_end_of_the_voiced_stretches() -> None:
    assert phrase_spans([(0.5, 2.5), (3.1, 2.9)]) == [(0.5, 3.0), (3.1, 6.0)]


def test_a_cut_inside_a_phrase_is_mid_clause() -> None:
    assert mid_clause(1.5, PHRASES)
    assert mid_clause(3.0 - CLAUSE_END_TOLERANCE_S - 0.01, PHRASES)


def test_a_cut_in_a_breath_or_a_pause_or_after_the_speech_is_at_a_clause_end() -> None:
    assert not mid_clause(3.05, PHRASES)  # the breath between the first two phrases
    assert not mid_clause(9.2, PHRASES)  # the sentence's pause
    assert not mid_clause(12.5, PHRASES)  # after the last phrase


def test_a_cut_within_the_tolerance_before_a_phrase_end_is_at_a_clause_end() -> None:
    assert not mid_clause(3.0 - CLAUSE_END_TOLERANCE_S + 0.01, PHRASES)
    assert not mid_clause(6.0, PHRASES)
    assert mid_clause(5.9, PHRASES, tolerance=0.05)


def test_a_sentence_cut_into_three_pieces_counts_three() -> None:
    pieces = [(0.5, 3.0), (3.1, 6.0), (6.2, 9.0), (9.45, 12.0)]
    assert pieces_per_sentence(SENTENCES, pieces) == [3, 1]


def test_a_piece_across_two_sentences_counts_for_both_but_not_a_window_past_an_edge() -> None:
    assert pieces_per_sentence(SENTENCES, [(0.5, 10.0), (10.0, 12.0)]) == [1, 2]
    assert pieces_per_sentence(SENTENCES, [(0.5, 9.47), (9.44, 12.0)]) == [1, 1]  # 20 ms, 10 ms over


def test_a_sentence_no_piece_holds_counts_zero() -> None:
    assert pieces_per_sentence(SENTENCES, [(0.5, 9.0)]) == [1, 0]


def test_words_are_the_voiced_time_inside_a_piece_at_the_speech_rate() -> None:
    out = cuts(PHRASES, SENTENCES, [(3.1, 9.0), (0.5, 2.0), (2.0, 3.0)])
    # in the pieces' order on the timeline; the breath (6.0-6.2) inside the first piece says no word
    assert out.words_per_piece == pytest.approx([1.5 * WORDS_PER_S, 1.0 * WORDS_PER_S, 5.7 * WORDS_PER_S])


def test_timer_cuts_inside_phrases_against_cuts_at_the_breaths() -> None:
    # a timer every 1.0 s of speech: ends at 1.5, 2.5 mid-phrase, 3.0 at its end
    timer = [(0.5, 1.5), (1.5, 2.5), (2.5, 3.0), (3.1, 6.0), (6.2, 9.0), (9.45, 12.0)]
    out = cuts(PHRASES, SENTENCES, timer)
    assert (out.cuts, out.mid_clause_cuts) == (6, 2)
    assert out.mid_clause_share == pytest.approx(2 / 6)
    assert out.pieces_per_sentence == [5, 1]
    figures = out.figures()
    assert figures["pieces_per_sentence_p50"] == 3.0
    assert figures["pieces_per_sentence_mean"] == 3.0
    assert figures["mid_clause_cuts"] == 2 and figures["cuts"] == 6


def test_no_pieces_has_no_share() -> None:
    out = cuts(PHRASES, SENTENCES, [])
    assert out.mid_clause_share is None
    assert out.figures()["words_per_piece_p50"] is None
    assert out.pieces_per_sentence == [0, 0]


def test_pieces_cut_at_every_phrase_of_the_synthetic_speech_are_never_mid_clause() -> None:
    for timeline in (
        monologue_timeline(1.0, random.Random(3)),
        dialogue_timeline(6, random.Random(3)),
    ):
        phrases = phrase_spans(timeline.voiced)
        out = cuts(phrases, timeline.sentences, phrases)
        assert out.mid_clause_cuts == 0 and out.cuts == len(phrases)
        assert sum(out.pieces_per_sentence) == len(phrases)
