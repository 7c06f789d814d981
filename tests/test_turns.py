"""A turn-based STT's turns cut into pieces by the ears (`agent/loops/ears/turns.py`), on the events the
deepgram plugin's `STTv2` makes of Flux's messages."""

from __future__ import annotations

from livekit.agents import LanguageCode, stt
from livekit.agents.voice.io import TimedString

from agent.loops.ears.turns import TurnPieces

Kind = stt.SpeechEventType


def turn_event(kind: stt.SpeechEventType, transcript: str, window: tuple[float, float]) -> stt.SpeechEvent:
    """What the plugin makes of a `TurnInfo`: the whole turn's transcript so far, words without times."""
    words = [TimedString(w, start_time=0.0, end_time=0.0) for w in transcript.split()]
    data = stt.SpeechData(
        language=LanguageCode("en"), text=transcript, start_time=window[0], end_time=window[1], words=words
    )
    return stt.SpeechEvent(type=kind, alternatives=[data])


def texts(events: list[stt.SpeechEvent]) -> list[tuple[stt.SpeechEventType, str]]:
    return [(e.type, e.alternatives[0].text if e.alternatives else "") for e in events]


def test_a_turn_cut_twice_gives_three_pieces_that_hold_each_word_once() -> None:
    turns = TurnPieces()
    assert texts(turns.events(stt.SpeechEvent(type=Kind.START_OF_SPEECH))) == [(Kind.START_OF_SPEECH, "")]
    assert texts(turns.events(turn_event(Kind.INTERIM_TRANSCRIPT, "I would like", (0.5, 1.5)))) == [
        (Kind.INTERIM_TRANSCRIPT, "I would like")
    ]
    first = turns.cut()
    assert first is not None and first.type == Kind.FINAL_TRANSCRIPT
    # the update's last word may still grow ("like" -> "likely"): it waits for the next piece
    assert (first.alternatives[0].text, first.alternatives[0].start_time) == ("I would", 0.5)
    assert turns.cut() is None, "no update since the cut: nothing new to cut"

    interim = turns.events(turn_event(Kind.INTERIM_TRANSCRIPT, "I would like to thank Maria,", (0.5, 2.4)))
    assert texts(interim) == [(Kind.INTERIM_TRANSCRIPT, "like to thank Maria,")]
    assert interim[0].alternatives[0].start_time == 1.5, "a piece starts where the last one ended"
    second = turns.cut()
    # a clause mark after the last word says it is complete: it goes with the piece
    assert second is not None and second.alternatives[0].text == "like to thank Maria,"
    assert (second.alternatives[0].start_time, second.alternatives[0].end_time) == (1.5, 2.4)

    whole = "I would like to thank Maria, who worked late."
    assert texts(turns.events(turn_event(Kind.PREFLIGHT_TRANSCRIPT, whole, (0.5, 3.6)))) == [
        (Kind.PREFLIGHT_TRANSCRIPT, "who worked late.")
    ]
    end = turns.events(turn_event(Kind.FINAL_TRANSCRIPT, whole, (0.5, 3.7)))
    assert texts(end) == [(Kind.FINAL_TRANSCRIPT, "who worked late.")]
    assert turns.pieces == 2

    # the next turn starts from its first word
    nxt = turns.events(turn_event(Kind.INTERIM_TRANSCRIPT, "Thank you", (4.5, 5.0)))
    assert texts(nxt) == [(Kind.INTERIM_TRANSCRIPT, "Thank you")]
    assert nxt[0].alternatives[0].start_time == 4.5


def test_the_end_of_turn_always_holds_the_last_word_even_when_it_revised_it() -> None:
    """The update's last word ("wor") is revised by the end of turn ("word."), which adds no word: it is
    the end of turn's final, so the turn's end is covered by a piece."""
    turns = TurnPieces()
    turns.events(turn_event(Kind.INTERIM_TRANSCRIPT, "Good morning wor", (0.2, 1.4)))
    assert turns.cut() is not None
    end_of_turn = turns.events(turn_event(Kind.FINAL_TRANSCRIPT, "Good morning word.", (0.2, 1.7)))
    assert texts(end_of_turn) == [(Kind.FINAL_TRANSCRIPT, "word.")]
    end = stt.SpeechEvent(type=Kind.END_OF_SPEECH)
    assert turns.events(end) == [end], "the end of speech still reaches the ears"


def test_a_one_word_update_is_not_cut() -> None:
    turns = TurnPieces()
    turns.events(turn_event(Kind.INTERIM_TRANSCRIPT, "Good", (0.2, 0.6)))
    assert turns.cut() is None


def test_a_new_stream_hears_its_turn_from_the_first_word() -> None:
    turns = TurnPieces()
    turns.events(turn_event(Kind.INTERIM_TRANSCRIPT, "one two three", (0.0, 1.2)))
    assert turns.cut() is not None  # "one two"
    turns.reset()  # reconnected: the replay starts after the piece
    again = turns.events(turn_event(Kind.INTERIM_TRANSCRIPT, "three four", (0.0, 0.8)))
    assert texts(again) == [(Kind.INTERIM_TRANSCRIPT, "three four")]
