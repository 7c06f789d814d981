"""The fake Deepgram's timed recognizer (tests/fakes/timed_words.py): words by time, found in the received
stream wherever the microphone's audio lies in it, lost words left out."""

from __future__ import annotations

import numpy as np

from agent.run.filemode import read_wav
from tests.conftest import DIALOGUE
from tests.fakes.timed_words import TimedRecognizer, TimedWord, WordTimeline, locate

RATE = 16000


def timeline() -> WordTimeline:
    words = [("Good", 0.50, 0.80), ("morning,", 0.80, 1.40), ("everyone.", 1.40, 1.96)]
    return WordTimeline([TimedWord(a, b, w, "alice", 0, i) for i, (w, a, b) in enumerate(words)])


def test_locate_finds_a_chunk_where_it_was_cut_from() -> None:
    played = read_wav(DIALOGUE.wav).samples
    assert locate(played[12345 : 12345 + 6400], played) == 12345


def test_the_microphone_is_found_after_leading_idle_silence_and_words_come_by_midpoint() -> None:
    played = read_wav(DIALOGUE.wav).samples
    ear = TimedRecognizer(timeline(), played, RATE)
    lead = np.zeros(round(0.37 * RATE), np.int16)  # the track yielded silence before the speaker began
    stream = np.concatenate([lead, played])
    for i in range(0, round(0.6 * RATE), 320):
        ear.hear(stream[i : i + 320])
    assert not ear.aligned  # not 0.4 s of sound yet
    for i in range(round(0.6 * RATE), len(stream), 320):
        ear.hear(stream[i : i + 320])
    assert ear.offset_s is not None and abs(ear.offset_s - 0.37) < 0.002
    # connection time = microphone time + 0.37
    assert not ear.voiced(0.37, 0.86) and ear.voiced(0.86, 0.88)
    assert [w.word for w in ear.words(0.87, 1.37 + 0.2)] == ["Good", "morning,"]  # mid 1.10 < 1.57
    assert [w.word for w in ear.words(1.57, 2.40)] == ["everyone."]
    assert [len(h.words) for h in ear.heard] == [2, 1]


def test_a_word_whose_audio_was_lost_is_not_heard() -> None:
    played = read_wav(DIALOGUE.wav).samples
    received = played.copy()
    received[round(0.82 * RATE) : round(1.35 * RATE)] = 0  # "morning," lost on the way (a dropout)
    received[round(1.50 * RATE) : round(1.60 * RATE)] = 0  # a sliver of "everyone." lost: still heard
    ear = TimedRecognizer(timeline(), received, RATE, reference=played)
    ear.hear(received)
    assert ear.offset_s == 0.0
    assert [w.word for w in ear.words(0.0, 3.0)] == ["Good", "everyone."]
    assert [w.word for w in ear.heard[0].lost] == ["morning,"]


def test_words_added_while_heard_count_too() -> None:
    played = read_wav(DIALOGUE.wav).samples
    ear = TimedRecognizer(timeline(), played, RATE)
    ear.hear(played)
    assert not ear.voiced(2.2, 2.3)
    ear.timeline.add(TimedWord(2.1, 2.6, "Buenos", "echo", language="es"))
    assert ear.voiced(2.2, 2.3)
    assert [(w.word, w.language) for w in ear.words(2.0, 2.7)] == [("Buenos", "es")]


def test_silence_inserted_in_a_pause_is_followed_and_the_vad_waits_until_it_is() -> None:
    # a local track that ran dry plays 60 ms of silence in the dialogue's first pause: the rest of the
    # speech arrives 60 ms later on the connection than it was said
    played = read_wav(DIALOGUE.wav).samples
    at, extra = round(2.5 * RATE), np.zeros(round(0.06 * RATE), np.int16)
    stream = np.concatenate([played[:at], extra, played[at:]])
    said = timeline()
    said.add(TimedWord(3.04, 3.39, "Thank", "alice", 1, 0))
    ear = TimedRecognizer(said, played, RATE)
    for i in range(0, round(3.1 * RATE), 320):
        ear.hear(stream[i : i + 320])
    # the sound after the gap began at 3.04 + 0.06 s (the clean fixture's pause is digital silence): the
    # mapping from there is not known until 0.2 s of it arrived, and the VAD is held there
    assert ear.settled <= round(3.11 * RATE)
    for i in range(round(3.1 * RATE), len(stream), 320):
        ear.hear(stream[i : i + 320])
    assert ear.settled == len(stream) and ear.breaks and abs(ear.breaks[-1][1] - 0.06) < 0.002
    assert [w.word for w in ear.words(3.0, 3.5)] == ["Thank"]  # its midpoint 3.215 said, 3.275 received
    assert ear.voiced(3.12, 3.13) and not ear.voiced(3.05, 3.09)


def test_sound_mixed_in_live_is_not_taken_for_the_microphone_found_again() -> None:
    """A loudspeaker's echo mixed into the microphone live is not in what was played: alone in a pause, it
    was matched against the played audio and moved the timeline (`python -m bench hall`'s echo rows: two
    segments overlapped, and a word in both was counted as interpreted twice). Without realignment the
    timeline stays where the speech put it."""
    played = read_wav(DIALOGUE.wav).samples
    rng = np.random.default_rng(22)
    echo = np.zeros(len(played), np.int16)
    at = round(2.3 * RATE)  # in the first pause: noise as loud as speech, 0.5 s
    echo[at : at + round(0.5 * RATE)] = rng.normal(0, 3000, round(0.5 * RATE)).astype(np.int16)
    heard = (played.astype(np.int32) + echo).clip(-32768, 32767).astype(np.int16)
    for realign, moved in ((True, True), (False, False)):
        ear = TimedRecognizer(timeline(), played, RATE, realign=realign)
        for i in range(0, len(heard), 320):
            ear.hear(heard[i : i + 320])
        assert bool(ear.breaks) is moved, ear.breaks
