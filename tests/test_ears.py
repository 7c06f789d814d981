"""The ears keep what was said when the STT link dies: reconnect with backoff, replay, nothing twice."""

from __future__ import annotations

import pytest

from agent.captions import CaptionLog
from agent.latency import LatencyTracker
from tests.conftest import DIALOGUE, Fakes
from tests.harness import run_interpreter
from tests.loopback import tone_sequence


async def test_stt_drop_mid_utterance_loses_nothing_and_repeats_nothing(dialogue_fakes: Fakes):
    fakes = dialogue_fakes
    fakes.deepgram.drop_after_audio_s(3.6)  # in the middle of the second sentence (2.96 s - 4.97 s)
    fakes.deepgram.refuse_next(2)  # and the first two reconnects are refused: backoff, then back
    tracker, captions = LatencyTracker(), CaptionLog()
    interpreter, listener = await run_interpreter(fakes, DIALOGUE.wav, tracker, captions)

    assert fakes.deepgram.connections[0].dropped
    assert fakes.deepgram.refused == 2
    assert interpreter.ears.reconnects == 3  # the drop, then two refusals
    # every sentence transcribed exactly once, the interrupted one from the replayed audio
    assert [f.transcript for f in fakes.deepgram.finals] == DIALOGUE.transcripts
    assert [c.text for c in captions.finals(translated=False)] == DIALOGUE.transcripts
    # the new connection's word times start from its own zero, yet the ears keep the speaker's
    # timeline: each utterance ends where its speech ends in the WAV
    assert fakes.deepgram.finals[1].end < DIALOGUE.speech_ends[1] - 1.0
    ends = [c.end_s for c in captions.finals(translated=False)]
    assert ends == pytest.approx(DIALOGUE.speech_ends, abs=0.1)
    heard = interpreter.ears
    assert heard.utterances == 3 and heard.dropped_audio_s == 0
    assert tone_sequence(listener.audio(), listener.sample_rate) == [400, 600, 800]
    assert tracker.spoken == 3
