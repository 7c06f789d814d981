"""Deepgram Flux as the STT (`DEEPGRAM_MODEL=flux-general-en`): the ears cut its turns into pieces, and an
eager end of turn is translated ahead as a draft that nothing plays until the end of turn confirms it.
The real `deepgram.STTv2` plugin against the fake Flux (tests/fakes/flux.py), on tones it hears as
numbered words."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import numpy as np
from prometheus_client import REGISTRY

from agent.loops.ears.loop import Ears
from agent.loops.models import Utterance
from agent.loops.pipeline import Interpreter, PipelineOptions
from agent.providers.build import build_providers, build_stt
from agent.run.filemode import Pcm, paced_frames, read_wav
from agent.settings.config import Settings, load_settings
from agent.telemetry.latency import LatencyTracker
from agent.telemetry.usage import Usage
from tests.conftest import DIALOGUE, start_room_fakes, stop_fakes
from tests.fakes import Delay, FakeCartesia, FakeDeepgram, FakeLLM, FluxTiming, numbered_words
from tests.harness import spoken_text
from tests.livekit_server import LiveKitServer
from tests.loopback import LoopbackListener, eventually, tone_sequence
from tests.real_room import real_room
from tests.test_pause_cut import RATE, Heard, Step, quiet, speaker, tone

# no jitter: Flux's end of turn 0.26 s of audio after the speech, its eager end of turn 0.06 s after it
STEADY = FluxTiming(eot_delay=Delay(0.26), eager_lead=Delay(0.2))


@dataclass
class DraftLog:
    """The ears' drafts, as the router would get them."""

    drafts: list[Utterance] = field(default_factory=list)
    withdrawn: list[str] = field(default_factory=list)

    def draft(self, utterance: Utterance) -> None:
        self.drafts.append(utterance)

    def withdraw(self, speaker: str) -> None:
        self.withdrawn.append(speaker)


NOWHERE = "http://127.0.0.1:9"


def flux_settings(fake: FakeDeepgram, llm: str = NOWHERE, tts: str = NOWHERE, **env: str) -> Settings:
    return load_settings(
        {
            "DEEPGRAM_API_KEY": "dg-test-key",
            "DEEPGRAM_BASE_URL": fake.base_url,  # .../v1/listen: Flux is reached at its /v2/listen
            "DEEPGRAM_MODEL": "flux-general-en",
            "SOURCE_LANGUAGE": "en",
            "CEREBRAS_API_KEY": "cb-test-key",
            "CEREBRAS_BASE_URL": llm,
            "CARTESIA_API_KEY": "ct-test-key",
            "CARTESIA_BASE_URL": tts,
            "LLM_ATTEMPT_TIMEOUT_S": "3",
            **env,
        },
        require_livekit=False,
    )


async def hear(fake: FakeDeepgram, steps: list[Step], *, drafts: DraftLog | None = None, **env: str) -> Heard:
    heard = Heard()
    await fake.start()
    try:
        settings = flux_settings(fake, **env)
        options, language = PipelineOptions.from_settings(settings), settings.source_language
        async with aiohttp.ClientSession() as http:
            stt = build_stt(settings, language, http)
            ears = Ears(
                stt=stt, frames=speaker(steps, heard), out=heard, tracker=LatencyTracker(), speaker="ann",
                language=language, max_segment_s=options.max_segment_s, pause_cut_s=options.pause_cut_s,
                drafts=drafts,
            )  # fmt: skip
            try:
                await asyncio.wait_for(ears.run(), 60.0)
            finally:
                await stt.aclose()
    finally:
        await fake.aclose()
    return heard


async def test_a_long_flux_turn_is_cut_into_pieces_that_hold_each_word_once():
    """A 4 s turn with no pause: Flux would end it only when the speaker stops; the ears cut it about
    every STT_MAX_SEGMENT_S, each piece the words of the freshest update, and the end of turn the rest."""
    fake = FakeDeepgram([], transcript_for=numbered_words(), flux_timing=STEADY)
    heard = await hear(fake, [quiet(0.3), tone(4.0), quiet(0.8)], STT_MAX_SEGMENT_S="1.0")

    [turn] = fake.flux_turns
    assert len(heard) >= 3, [u.text for u in heard]
    # (an update's last word may carry a period its final drops: numbered_words ends every text with one)
    said = [w.rstrip(".") for u in heard for w in u.text.split()]
    assert said == (turn.transcript or "").replace(".", "").split(), "every word once, in order"
    starts = [u.audio_start for u in heard]
    assert starts == sorted(starts) and all(u.audio_end >= u.audio_start for u in heard)
    # the last piece ends where the speech did, not where Flux's audio window did (0.26 s later)
    assert abs(heard[-1].audio_end - 4.3) < 0.1


async def test_an_eager_end_of_turn_is_a_draft_and_a_resumed_turn_withdraws_it():
    """Eager on: a pause long enough for an eager end of turn, then more speech, withdraws the draft;
    the turn's end gives a second draft with the whole turn, before its final with the same text."""
    fake = FakeDeepgram([], transcript_for=numbered_words(), flux_timing=STEADY)
    drafts = DraftLog()
    heard = await hear(
        fake,
        [quiet(0.3), tone(1.2), quiet(0.15), tone(1.2), quiet(0.8)],
        drafts=drafts,
        STT_MAX_SEGMENT_S="0",
        DEEPGRAM_EAGER_EOT_THRESHOLD="0.5",
    )

    [turn] = fake.flux_turns
    assert turn.kinds.count("TurnResumed") == 1
    [utterance] = heard
    assert [d.text for d in drafts.drafts][-1] == utterance.text, "the last draft is the final's text"
    assert drafts.drafts[0].text != utterance.text and drafts.withdrawn == ["ann"]
    assert drafts.drafts[-1].id == utterance.id


def counter(outcome: str) -> float:
    return REGISTRY.get_sample_value("interpreter_drafts_total", {"outcome": outcome}) or 0.0


# the fake TTS speaks a draft's short translation ("[translated] w1 w2 w3.") at one tone, a whole turn's at
# another, so what a listener heard tells them apart
DRAFT_HZ, TURN_HZ = 700.0, 300.0


async def interpret(
    steps: list[np.ndarray], usage: Usage | None = None, **env: str
) -> tuple[FakeLLM, FakeCartesia, list[str], list[float]]:
    """The whole interpreter (ears, brain, mouth) on Flux with eager ends of turn, into Spanish; the
    tones the listener heard last."""
    fake = FakeDeepgram([], transcript_for=numbered_words(), flux_timing=STEADY)
    llm = FakeLLM()
    tts = FakeCartesia(freq_for=lambda text: DRAFT_HZ if len(text.split()) <= 5 else TURN_HZ)
    for server in (fake, llm, tts):
        await server.start()
    pcm = Pcm(np.concatenate(steps), RATE)
    try:
        settings = flux_settings(
            fake, llm.base_url, tts.base_url, DEEPGRAM_EAGER_EOT_THRESHOLD="0.5", STT_MAX_SEGMENT_S="0", **env
        )
        listener = LoopbackListener(settings.tts.sample_rate)
        async with aiohttp.ClientSession() as http:
            languages = {"source_language": "en", "target_language": "es"}
            providers = build_providers(settings, **languages, http_session=http)
            interpreter = Interpreter(
                providers=providers, frames=paced_frames(pcm), output=listener.source,
                tracker=LatencyTracker(), speaker="ann", source_language="en", target_language="es",
                options=PipelineOptions.from_settings(settings), usage=usage,
            )  # fmt: skip
            try:
                await asyncio.wait_for(interpreter.run(), 60.0)
            finally:
                await listener.aclose()
                await providers.aclose()
        finals = [t.transcript or "" for t in fake.flux_turns]
        heard = tone_sequence(listener.audio(), listener.sample_rate)
    finally:
        for server in (fake, llm, tts):
            await server.aclose()
    return llm, tts, finals, heard


async def test_a_confirmed_draft_is_spoken_without_asking_the_llm_or_the_tts_again():
    used = counter("used")
    llm, tts, [final], heard = await interpret([quiet(0.3), tone(2.4), quiet(1.0)])

    assert len(llm.requests) == 1, "the draft's request served the final"
    assert counter("used") == used + 1
    [context] = tts.context_order  # its first clause, synthesized ahead, is what was played
    assert spoken_text(tts.contexts[context]) == f"[translated] {final}"
    assert heard == [TURN_HZ]


async def test_a_withdrawn_draft_is_never_spoken():
    """The turn resumed after its eager end: the draft's translation was asked for, but only the whole
    turn's is spoken."""
    discarded = counter("discarded")
    usage = Usage()
    steps = [quiet(0.3), tone(1.2), quiet(0.15), tone(1.2), quiet(1.0)]
    llm, tts, [final], heard = await interpret(steps, usage)

    assert counter("discarded") >= discarded + 1
    assert len(llm.requests) == 2, "the withdrawn draft's, and the whole turn's (its draft)"
    synthesized = [spoken_text(tts.contexts[c]) for c in tts.context_order]
    assert synthesized[-1] == f"[translated] {final}" and len(synthesized[0].split()) <= 5
    assert heard == [TURN_HZ], "the withdrawn draft's audio, synthesized ahead, was never played"
    # what the drafts cost, counted in their channel's language like any request (made from the ears' task)
    assert usage.total("input_tokens", language="es") == sum(u["prompt_tokens"] for u in llm.usage_sent)
    synthesized_characters = sum(len(text.strip()) for c in tts.context_order for text in tts.contexts[c])
    assert usage.total("characters", language="es") == synthesized_characters


async def test_flux_in_a_real_room_interprets_every_turn_once(livekit_server: LiveKitServer, tmp_path: Path):
    """The worker on Flux (flux-general-en, eager ends of turn) in a real room: an English speaker's three
    sentences reach a Spanish listener as three translations, in order, nothing of a draft spoken twice."""
    fakes = await start_room_fakes()
    fakes.deepgram.flux_timing = FluxTiming(eot_delay=Delay(0.6), eager_lead=Delay(0.3))  # a busy machine's
    try:
        env = {"DEEPGRAM_MODEL": "flux-general-en", "SOURCE_LANGUAGE": "en"}
        env["DEEPGRAM_EAGER_EOT_THRESHOLD"] = "0.5"
        async with real_room(livekit_server, fakes, tmp_path, **env) as room:
            alice = await room.speaker("alice", attributes={"language": "en"}, dispatch=room.dispatch())
            bob = await room.speaker("bob", attributes={"language": "es"})
            await room.agent_tracks(alice, "interpretation-es")
            alice.say(read_wav(DIALOGUE.wav))
            await eventually(
                lambda: len(bob.final_captions(translated=True, language="es")) == 3,
                within_s=40,
                what="every translated caption",
            )
            finals = bob.final_captions(translated=True, language="es")
            assert [c.text for c in finals] == list(DIALOGUE.translations.values())
            source = [c.text for c in bob.captions if c.final and not c.translated and c.sender == "alice"]
            assert source == DIALOGUE.transcripts
            assert {c.query.get("model") for c in fakes.deepgram.connections} == {"flux-general-en"}
            assert fakes.deepgram.flux_eager_sent >= 3
            spoken = [spoken_text(t) for t in fakes.cartesia.contexts.values()]
            assert spoken == list(DIALOGUE.translations.values())
            room.check_worker_output()
    finally:
        await stop_fakes(fakes)


async def test_flux_multi_detects_each_turns_language():
    """`flux-general-multi` with `auto`: each turn's language is the one Flux detected (its `languages`)."""
    fake = FakeDeepgram(
        {"multi": ["Hola a todos.", "Good morning."]},
        languages={"Hola a todos.": "es", "Good morning.": "en"},
        flux_timing=STEADY,
    )
    steps: list[Step] = [quiet(0.3), tone(1.0), quiet(0.8), 1, tone(1.0), quiet(0.8)]
    heard = await hear(
        fake, steps, DEEPGRAM_MODEL="flux-general-multi", SOURCE_LANGUAGE="auto", STT_MAX_SEGMENT_S="0"
    )

    assert [(u.text, u.language) for u in heard] == [("Hola a todos.", "es"), ("Good morning.", "en")]
    assert {c.query.get("model") for c in fake.connections} == {"flux-general-multi"}
