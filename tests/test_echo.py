"""The interpreter never interprets itself, and never interprets one sentence twice: a speaker's microphone
picking up an interpretation the room plays (a loudspeaker) is not interpreted again; one voice heard by
two speakers' microphones (one table) is interpreted once, as the louder one's. In the room harness (the
real loops, the fake providers at the wire): the fake Deepgram's scripted transcripts are what each
microphone's STT heard, so an echo is the speaker's STT returning the interpretation's text."""

from __future__ import annotations

import asyncio
import logging

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import stt
from livekit.agents.language import LanguageCode
from prometheus_client import REGISTRY

from agent.language.codes import AUTO
from agent.loops.captions import Caption, CaptionLog
from agent.loops.crosstalk import CrossTalk
from agent.loops.ears.replay import ReplayBuffer
from agent.loops.ears.transcripts import Transcripts
from agent.loops.echo import EchoBook, sentences, similar, words
from agent.loops.models import Utterance
from agent.run.filemode import Pcm, paced_frames, read_wav
from tests.conftest import DIALOGUE, ONE_SENTENCE
from tests.loopback import LoopbackSpeaker, LoudspeakerPath, eventually
from tests.participants import Speaker
from tests.real_room import RealRoom
from tests.test_auto_language import auto_room, source_captions
from tests.test_real_room import room  # noqa: F401 (the real-room tests' fixture)
from tests.test_room import RoomHarness, harness  # noqa: F401 (a fixture)


def not_interpreted(reason: str) -> float:
    return REGISTRY.get_sample_value("interpreter_not_interpreted_total", {"reason": reason}) or 0.0


def speak_pcm(h: RoomHarness, participant: object, pcm: Pcm) -> None:
    speaker = LoopbackSpeaker(pcm)
    h.speakers.append(speaker)
    h.room.publish_audio(participant, speaker.track)  # type: ignore[arg-type]
    speaker.start()


# -- matching -------------------------------------------------------------------------------------------


def test_words_and_sentences_ignore_case_and_punctuation() -> None:
    assert words("¡Buenos días, a TODOS!") == ["buenos", "días", "a", "todos"]
    split = sentences("Good morning, everyone. Thank you! And")
    assert split == ["Good morning, everyone.", "Thank you!", "And"]


def test_an_imperfect_transcript_of_an_echo_matches_and_a_different_sentence_does_not() -> None:
    said = set(words("Gracias por acompañarnos hoy en la llamada."))
    assert similar(words("gracias por acompañarnos hoy en llamada"), said)  # a word lost
    assert similar(words("Gracias por acompañarlos hoy en la llamada"), said)  # one misheard of 7
    assert not similar(words("Gracias por venir hoy."), said)  # short: every word must match
    assert not similar(words("Let us start with the budget."), said)


def test_only_what_was_on_the_air_then_is_echo_and_own_sentences_around_it_stay() -> None:
    now = [100.0]
    book = EchoBook(lambda: now[0])
    said = Caption("alice-0-es", "alice", "es", "Buenos días a todos.", final=False, translated=True)
    book.said(said)
    now[0] = 101.5
    book.said(Caption("alice-0-es", "alice", "es", "Buenos días a todos.", final=True, translated=True))
    # heard while it played: the echo sentence goes, the speaker's own sentence around it stays
    kept, dropped = book.own_words("Buenos días a todos. Let us start with the budget.", 100.3, 102.0)
    assert (kept, dropped) == ("Let us start with the budget.", 1)
    # heard long after it played: the speaker's own words, even if they are the same
    assert book.own_words("Buenos días a todos.", 110.0, 111.0) == ("Buenos días a todos.", 0)
    # echo and own words in one sentence (no sentence end between them): the echo's run goes, the speaker's
    # words stay
    mixed = "Buenos días a todos and then we talk about money and the plan"
    assert book.own_words(mixed, 100.5, 101.0, language="en") == (
        "and then we talk about money and the plan",
        1,
    )


def test_an_echos_edge_heard_just_before_or_after_the_speaker_goes_and_their_words_stay() -> None:
    """The hall's monologue (`python -m bench hall`): in a pause, the loudspeaker plays the translation of
    the sentence before; its last words or its first land in the speaker's next final, in one sentence
    with their own words. One or two words at the final's start or end, of a translation on the air in
    another language than the speaker's, go; the same words said by a speaker of that language stay."""
    now = [100.0]
    book = EchoBook(lambda: now[0])
    book.said(Caption("alice-3-es", "alice", "es", "Abrid el informe.", final=True, translated=True))
    assert book.own_words("el informe Costs stayed flat.", 100.2, 101.0, language="en") == (
        "Costs stayed flat.",
        1,
    )
    assert book.own_words("Lunch is at noon abrid", 100.2, 101.0, language="en") == ("Lunch is at noon", 1)
    # a Spanish speaker's own "el informe": their language, their words
    said = "el informe está listo"
    assert book.own_words(said, 100.2, 101.0, language="es") == (said, 0)
    # the speaker's language not known yet (auto, nothing detected): nothing at the edges is taken
    assert book.own_words("informe Costs stayed flat.", 100.2, 101.0) == ("informe Costs stayed flat.", 0)
    # in the middle, one or two words are the speaker's, whatever they are
    assert book.own_words("Costs el informe stayed flat.", 100.2, 101.0, language="en")[1] == 0
    # a short final (the timer cuts long speech at dips between words, so there are more): the echo's word
    # goes, the speaker's one stays; a final of the echo's words alone is the sentence rule's
    assert book.own_words("informe Questions", 100.2, 101.0, language="en") == ("Questions", 1)
    assert book.own_words("Questions abrid", 100.2, 101.0, language="en") == ("Questions", 1)


def test_a_final_that_held_an_echo_is_in_the_speakers_language_not_the_echos() -> None:
    """Auto: Deepgram detects a final's language from its words; when an echo's Spanish words were most of
    them, it says Spanish. What is left once they are dropped is the speaker's: in their language (else an
    English sentence would be 'interpreted' into English and the Spanish listener would miss it)."""
    now = [100.0]
    book = EchoBook(lambda: now[0])
    transcripts = Transcripts(speaker="alice", language=AUTO, prefix="alice", echo=book)
    heard = ReplayBuffer(30.0, speaker="alice")
    for _ in range(200):  # 4 s of audio, arrived by clock time 100.0
        heard.add(rtc.AudioFrame(bytes(640), 16000, 1, 320), 100.0, link_up=True)

    def final(text: str, language: str) -> Utterance | None:
        data = stt.SpeechData(language=LanguageCode(language), text=text, start_time=0.5, end_time=3.5)
        return transcripts.final(data, span=(0.5, 3.5), heard=heard, final_at=now[0])

    first = final("Good morning, everyone.", "en")
    assert first is not None and first.language == "en"
    book.said(Caption("alice-0-es", "alice", "es", "Abrid el informe ahora.", final=True, translated=True))
    second = final("el informe ahora Costs stayed flat.", "es")
    assert second is not None and (second.text, second.language) == ("Costs stayed flat.", "en")
    assert transcripts.detected == "en"


def utterance(speaker: str, text: str, *, end_at: float, level: float) -> Utterance:
    return Utterance(f"{speaker}-0", speaker, text, "en", 0.0, 1.0, end_at, end_at + 0.1, level=level)


async def test_the_quieter_copy_arriving_first_waits_and_the_louder_one_is_interpreted() -> None:
    passed: list[Utterance] = []
    captions = CaptionLog()
    speaking = {"alice": True, "bob": False}  # alice's transcript is on its way: bob's may be a copy

    def others_mid_speech(speaker: str) -> bool:
        return any(mid for who, mid in speaking.items() if who != speaker)

    crosstalk = CrossTalk(passed.append, mid_speech=others_mid_speech, captions=captions, hold_s=30.0)
    crosstalk.put_nowait(utterance("bob", "Please turn on your camera.", end_at=10.03, level=0.02))
    assert passed == []  # waits: alice is mid-speech
    crosstalk.put_nowait(utterance("alice", "Please turn on your camera", end_at=10.0, level=0.08))
    assert [u.speaker for u in passed] == ["alice"]
    assert [(c.segment_id, c.text, c.final) for c in captions.captions] == [("bob-0", "", True)]
    # a different sentence of bob's, nobody else mid-speech: at once
    speaking["alice"] = False
    crosstalk.put_nowait(utterance("bob", "Good morning, everyone.", end_at=12.0, level=0.08))
    assert [u.speaker for u in passed] == ["alice", "bob"] and crosstalk.dropped == 1


async def test_an_utterance_waits_at_most_the_hold_and_a_late_copy_is_dropped() -> None:
    passed: list[Utterance] = []
    crosstalk = CrossTalk(passed.append, mid_speech=lambda _: True, hold_s=0.05)
    crosstalk.put_nowait(utterance("alice", "Let us start with the budget.", end_at=5.0, level=0.08))
    await eventually(lambda: len(passed) == 1, what="released after the hold")
    crosstalk.put_nowait(utterance("bob", "let us start with a budget", end_at=5.4, level=0.09))
    assert len(passed) == 1 and crosstalk.dropped == 1  # the first one stands
    crosstalk.put_nowait(utterance("bob", "Let us start with the budget.", end_at=7.0, level=0.09))
    await eventually(lambda: len(passed) == 2, what="a repeat seconds later is bob's own")


async def test_a_piece_of_the_copy_ending_half_a_second_before_the_speakers_own_waits_for_it() -> None:
    """Alice's microphone hears bob 12 dB quieter: a soft stretch of his is a pause there, and her ears end
    a one-word piece of him half a second before his own ears end theirs (`python -m bench hall`'s
    cross-talk): it waits for his, which is interpreted as his."""
    passed: list[Utterance] = []
    crosstalk = CrossTalk(passed.append, mid_speech=lambda _: True)  # the default hold
    crosstalk.put_nowait(utterance("alice", "Please", end_at=3.56, level=0.02))
    await asyncio.sleep(0.5)
    assert passed == []
    crosstalk.put_nowait(utterance("bob", "Please turn on your", end_at=4.0, level=0.08))
    assert [(u.speaker, u.text) for u in passed] == [("bob", "Please turn on your")]
    assert crosstalk.dropped == 1


async def test_a_waiting_utterance_goes_on_once_the_others_transcript_came_and_nobody_is_mid_speech() -> None:
    passed: list[Utterance] = []
    speaking = {"alice": False, "bob": True}
    crosstalk = CrossTalk(
        passed.append,
        mid_speech=lambda speaker: any(mid for who, mid in speaking.items() if who != speaker),
        hold_s=30.0,
    )
    crosstalk.put_nowait(utterance("alice", "Let us start with the budget.", end_at=5.0, level=0.08))
    assert passed == []  # bob is mid-speech: his transcript may be a copy
    speaking["bob"] = False
    crosstalk.put_nowait(utterance("bob", "Costs stayed flat this year.", end_at=5.2, level=0.08))
    assert [u.speaker for u in passed] == ["alice", "bob"]  # not a copy: both at once, in order


# -- in a room ------------------------------------------------------------------------------------------


async def test_an_interpretation_picked_up_by_a_speakers_microphone_is_not_interpreted_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """SOURCE_LANGUAGE=auto: alice's microphone hears the Spanish interpretation of her first sentence
    while it plays; her STT hears it as Spanish. Before: translated back into English (a loop); now it is
    dropped (counted, not captioned as hers), and her next sentence is interpreted."""
    caplog.set_level(logging.INFO)
    first, _, third = DIALOGUE.transcripts
    echo = DIALOGUE.translations["Good morning"]  # "Buenos días a todos.", played on interpretation-es
    before = not_interpreted("echo")
    async with auto_room([first, echo, third], {echo: "es"}) as h:
        await h.session.start()
        alice = h.room.join("alice")
        h.speak(alice, DIALOGUE.wav)  # her second segment is the echo: her STT returns the interpretation
        await eventually(lambda: len(h.played("es")) == 2, what="her two sentences spoken in Spanish")
        await eventually(lambda: len(h.fakes.deepgram.finals) == 3, what="every segment transcribed")
        await h.session.settled()
        assert h.captions(translated=True)[-1].text == DIALOGUE.translations["budget"]
        assert [text for _, text, _ in source_captions(h) if text] == [first, third]
        assert "en" not in h.session.outputs or h.played("en") == []  # never interpreted back
        assert [c.attributes["language"] for c in h.captions(translated=True)] == ["es", "es"]
        assert not_interpreted("echo") == before + 1
        # not even an interim caption showed the echo as her words
        shown = [c.text for c in h.captions(final=False, translated=False)]
        assert shown and not any("Buenos" in text for text in shown), shown
    # the drop is logged as counts, never with what was said
    dropped = [r for r in caplog.records if r.getMessage() == "dropped an echo of the interpretation"]
    assert [r.__dict__["sentences"] for r in dropped] == [1]
    for record in caplog.records:
        logged = record.getMessage() + repr({k: v for k, v in record.__dict__.items() if k != "msg"})
        assert not any(text in logged for text in (first, echo, third)), record.getMessage()


def bleed_then_own(own: Pcm, bleed: Pcm, *, delay_s: float, gain_db: float, gap_s: float) -> Pcm:
    """A microphone that hears another speaker `delay_s` later at `gain_db`, then its own speaker."""
    assert own.sample_rate == bleed.sample_rate
    rate = own.sample_rate
    quiet = (bleed.samples.astype(np.float64) * 10 ** (gain_db / 20)).astype(np.int16)
    lead, gap = np.zeros(round(delay_s * rate), np.int16), np.zeros(round(gap_s * rate), np.int16)
    return Pcm(np.concatenate([lead, quiet, gap, own.samples]), rate)


async def test_one_voice_heard_by_two_microphones_is_interpreted_once_as_the_louder_ones(
    harness: RoomHarness,  # noqa: F811 (the fixture)
) -> None:
    """Alice and bob at one table: bob's microphone hears alice's sentence 30 ms later at -12 dB, and both
    STT streams transcribe it. Before: interpreted twice (once as bob's); now once, as alice's, and bob's
    own sentence after it is interpreted."""
    h = harness
    camera, morning = ONE_SENTENCE.transcripts[0], DIALOGUE.transcripts[0]
    h.fakes.deepgram.scripts["en"] = [camera, camera, morning]
    h.fakes.deepgram.vad_threshold = 0.004  # the fake's STT hears the quiet copy as speech too
    before = not_interpreted("crosstalk")
    await h.session.start()
    alice = h.room.join("alice", attributes={"language": "en"})
    bob = h.room.join("bob", attributes={"language": "en"})
    await h.session.settled()
    alice_pcm = read_wav(ONE_SENTENCE.wav)
    dialogue = read_wav(DIALOGUE.wav)
    bob_own = Pcm(dialogue.samples[: round((DIALOGUE.speech_ends[0] + 0.2) * dialogue.sample_rate)], 16000)
    speak_pcm(h, alice, alice_pcm)
    speak_pcm(h, bob, bleed_then_own(bob_own, alice_pcm, delay_s=0.03, gain_db=-12.0, gap_s=1.0))
    await eventually(lambda: len(h.fakes.deepgram.finals) == 3, what="every segment transcribed")
    await eventually(lambda: len(h.played("es")) == 2, what="two sentences spoken")
    await h.session.settled()
    translated = [(c.attributes["interpreter.speaker"], c.text) for c in h.captions(translated=True)]
    assert translated == [
        ("alice", ONE_SENTENCE.translations["camera"]),
        ("bob", DIALOGUE.translations["Good morning"]),
    ]
    # a front end keeps a segment's latest caption: bob's caption of alice's words was taken back
    captions = h.captions(translated=False)
    latest = {c.attributes["lk.segment_id"]: (c.sender_identity, c.text) for c in captions}
    assert sorted(said for said in latest.values() if said[1]) == [("alice", camera), ("bob", morning)]
    assert not_interpreted("crosstalk") == before + 1


# -- in a real room -------------------------------------------------------------------------------------


class LoudspeakerSpeaker(Speaker):
    """A speaker whose laptop plays the interpretation she receives through its loudspeaker, next to her
    microphone: what she publishes is her speech mixed with the `track` she hears, `delay_s` later and
    `gain_db` quieter (a loudspeaker's path), mixed live as it arrives."""

    def __init__(self, identity: str, track: str, *, delay_s: float, gain_db: float) -> None:
        super().__init__(identity)
        self._track_name, self._gain = track, 10 ** (gain_db / 20)
        self._path = LoudspeakerPath(round(delay_s * self.source.sample_rate))
        self.room.on("track_subscribed", self._on_loudspeaker)

    def _on_loudspeaker(self, track: rtc.Track, publication: rtc.RemoteTrackPublication, _: object) -> None:
        if publication.name == self._track_name:
            task = asyncio.create_task(self._play(track))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _play(self, track: rtc.Track) -> None:
        stream = rtc.AudioStream.from_track(track=track, sample_rate=self.source.sample_rate, num_channels=1)
        try:
            async for event in stream:
                self._path.play(np.frombuffer(event.frame.data, np.int16).astype(np.float64) * self._gain)
        finally:
            await stream.aclose()

    def say(self, pcm: Pcm) -> asyncio.Task[None]:
        async def speak() -> None:
            async for frame in paced_frames(pcm):
                own = np.frombuffer(frame.data, np.int16).astype(np.float64)
                mixed = np.clip(own + self._path.picked_up(len(own)), -32768, 32767).astype(np.int16)
                await self.source.capture_frame(
                    rtc.AudioFrame(mixed.tobytes(), frame.sample_rate, 1, frame.samples_per_channel)
                )

        self._speaking = asyncio.create_task(speak())
        return self._speaking


async def test_in_a_real_room_a_loudspeaker_next_to_the_microphone_is_not_interpreted_again(
    room: RealRoom,  # noqa: F811 (the fixture)
) -> None:
    """SOURCE_LANGUAGE=auto (the worker's default). Alice's laptop plays the Spanish interpretation next to
    her microphone (150 ms later, -10 dB): it reaches the interpreter as part of her audio, between her two
    sentences, and her STT hears it as Spanish. Before: interpreted back into English; now dropped."""
    first, _, third = DIALOGUE.transcripts
    echo = DIALOGUE.translations["Good morning"]
    room.fakes.deepgram.scripts["multi"] = [first, echo, third]
    room.fakes.deepgram.languages[echo] = "es"
    alice = LoudspeakerSpeaker("alice", "interpretation-es", delay_s=0.15, gain_db=-10.0)
    await room.join(alice, dispatch=room.dispatch())
    await alice.publish()
    await room.agent_tracks(alice, "interpretation-es")
    dialogue = read_wav(DIALOGUE.wav)
    rate = dialogue.sample_rate
    # her first sentence, 4 s in which the loudspeaker plays its interpretation, then her third sentence
    said = np.concatenate(
        [
            dialogue.samples[: round((DIALOGUE.speech_ends[0] + 0.3) * rate)],
            np.zeros(4 * rate, np.int16),
            dialogue.samples[round((DIALOGUE.speech_ends[1] + 0.3) * rate) :],
        ]
    )
    alice.say(Pcm(said, rate))
    await eventually(
        lambda: len(alice.final_captions(translated=True, language="es")) == 2,
        within_s=60,
        what="her two sentences interpreted",
    )
    await eventually(lambda: len(room.fakes.deepgram.finals) == 3, within_s=20, what="the echo transcribed")
    await eventually(lambda: len(alice.final_captions(translated=False)) >= 2, what="her captions")
    assert alice.final_captions(translated=True, language="en") == []  # never interpreted back
    assert [c.text for c in alice.final_captions(translated=False) if c.text] == [first, third]


async def test_in_a_real_room_one_voice_two_microphones_heard_is_interpreted_once(
    room: RealRoom,  # noqa: F811 (the fixture)
) -> None:
    """Alice and bob at one table: bob's microphone carries alice's sentence 30 ms later at -12 dB, then
    his own. Her sentence is interpreted once, as hers; his own sentence is interpreted too."""
    camera, morning = ONE_SENTENCE.transcripts[0], DIALOGUE.transcripts[0]
    room.fakes.deepgram.scripts["en"] = [camera, camera, morning]
    room.fakes.deepgram.vad_threshold = 0.004  # the fake's STT hears the quiet copy as speech too
    alice = await room.speaker("alice", attributes={"language": "en"}, dispatch=room.dispatch())
    bob = await room.speaker("bob", attributes={"language": "en"})
    carol = await room.listener("carol", attributes={"language": "es"})
    await room.agent_tracks(carol, "interpretation-es")
    alice_pcm, dialogue = read_wav(ONE_SENTENCE.wav), read_wav(DIALOGUE.wav)
    bob_own = Pcm(dialogue.samples[: round((DIALOGUE.speech_ends[0] + 0.2) * dialogue.sample_rate)], 16000)
    alice.say(alice_pcm)
    bob.say(bleed_then_own(bob_own, alice_pcm, delay_s=0.03, gain_db=-12.0, gap_s=1.5))
    await eventually(lambda: len(room.fakes.deepgram.finals) == 3, within_s=40, what="every segment")
    his = DIALOGUE.translations["Good morning"]
    await eventually(
        lambda: any(c.text == his for c in carol.final_captions(translated=True)), within_s=40, what="his"
    )
    captions = carol.final_captions(translated=True)
    translated = [(c.attributes["interpreter.speaker"], c.text) for c in captions]
    assert translated == [
        ("alice", ONE_SENTENCE.translations["camera"]),
        ("bob", his),
    ]
