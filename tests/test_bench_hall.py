"""`python -m bench hall` (bench/hall/), tiny: the figures are taken from what a run did (a made-up run with
an echo, a double, a word missing and a cut mid-word; then a real run of the dialogue with a loudspeaker in
the room harness), never constants."""

from __future__ import annotations

import numpy as np

from agent.run.filemode import read_wav
from bench.hall.measure import measure
from bench.hall.mixes import CONDITIONS, Mic, mics
from bench.hall.report import goals, rows
from bench.hall.room import Run, gloss, run_condition
from bench.hall.words import timed_script, timeline_of
from tests.conftest import DIALOGUE
from tests.fakes.room import SentText
from tests.fakes.timed_words import HeardSegment, TimedWord


def caption(segment: str, text: str, sender: str, *, translated_for: str | None = None) -> SentText:
    attributes = {"lk.segment_id": segment, "lk.transcription_final": "true"}
    if translated_for is not None:
        attributes["interpreter.speaker"] = translated_for
    return SentText(text, "lk.transcription", attributes, sender)


def test_the_figures_come_from_the_script_and_what_was_heard() -> None:
    pcm = read_wav(DIALOGUE.wav)
    said = timed_script("alice", pcm.samples, pcm.sample_rate, DIALOGUE.transcripts)
    words = said.words  # Good morning, everyone. / Thank you for joining the call today. / Let us ...
    echo = TimedWord(2.2, 2.5, "Buenos", "echo", 0, 0, "es", -10.0)
    alice = Mic("alice", pcm.samples, pcm.samples, timeline_of(said), said)
    bob = Mic("bob", pcm.samples, pcm.samples, timeline_of(said), said.shifted(0.0, speaker="bob"))
    cut = 1.0  # inside "morning," (0.74-1.38 s): a cut mid-word
    heard = {
        "alice": [
            HeardSegment(0.5, cut, words[:1], (), cut_at=cut),
            HeardSegment(cut, 1.96, words[1:3], ()),
            HeardSegment(2.2, 4.98, (echo, *words[3:9]), (), cut_at=4.98),  # the echo, and "today." not heard
        ],
        "bob": [HeardSegment(0.5, 1.96, words[:3], ())],  # alice's first sentence, heard at bob's microphone
    }
    texts = [
        caption("alice-0", "Good", "alice"),
        caption("alice-0-es", "dooG", "agent", translated_for="alice"),
        caption("alice-1", "morning, everyone.", "alice"),
        caption("alice-1-es", "gninrom, enoyreve.", "agent", translated_for="alice"),
        caption("alice-2", "Buenos Thank you for joining the call", "alice"),
        caption("alice-2-es", "soneuB ...", "agent", translated_for="alice"),
        caption("bob-0", "Good morning, everyone.", "bob"),
        caption("bob-0-es", "dooG gninrom, enoyreve.", "agent", translated_for="bob"),
    ]
    run = Run([alice, bob], texts, [], 0, heard, {"alice": 0.0, "bob": 0.0})
    figures = measure(run)
    assert figures["utterances"] == 4
    assert (figures["echoes"], figures["echo_words"]) == (1, 1)
    assert figures["doubles"] == 1  # alice's first sentence, interpreted as hers and as bob's
    assert (figures["cuts"], figures["mid_word"]) == (2, 1)  # 4.98 s is after "today." ended
    # alice: "today." and her third sentence never captioned (6 words); bob: all but his first sentence (13)
    assert (figures["script_words"], figures["missing_words"]) == (32, 1 + 6 + 13)
    assert figures["sentences"] == 6 and figures["start_p50_s"] is None  # no audio was played
    assert figures["captions_unmatched"] == 0


def test_the_fake_translation_is_the_speech_backwards() -> None:
    speech = {"role": "user", "content": '<speech lang="en">Good morning, everyone.</speech>'}
    assert gloss([speech]) == "dooG gninrom, enoyreve."


async def test_a_dialogue_with_a_loudspeaker_in_the_room_is_measured_from_the_run() -> None:
    run = await run_condition(await mics("dialogue", CONDITIONS["echo"]))
    figures = measure(run)
    translated = {
        t.attributes["lk.segment_id"] for t in run.texts if "interpreter.speaker" in t.attributes and t.text
    }
    assert figures["utterances"] == len(translated) >= 3
    assert figures["script_words"] == 16
    # the loudspeaker played the interpretations into her microphone, and her STT heard some of it
    assert figures["echo_stretches"] >= 2
    assert any(w.source == "echo" for h in run.heard["alice"] for w in h.words)
    # every sentence of hers was heard interpreted, its lags taken against when she said it
    assert figures["sentences"] == 3 and figures["sentences_unheard"] == 0
    assert 0 < figures["start_p50_s"] <= figures["start_p95_s"]
    assert figures["end_p50_s"] is not None and figures["captions_unmatched"] == 0
    results = {"runs": {"dialogue": {"echo": figures}}}
    (row,) = rows(results)
    assert row[:5] == ["dialogue", "echo", *(str(figures[k]) for k in ("utterances", "echoes", "doubles"))]
    assert row[6] == f"{figures['missing_words']}/16"
    assert [g for g, _ in goals(results)] == [
        "dialogue: 0 echoes interpreted",
        "dialogue: 0 sentences interpreted twice",
    ]
    assert np.isfinite(figures["end_p95_s"])
