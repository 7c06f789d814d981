"""The hall's conditions: what each microphone carries, and which words reach it when.

- clean: the speaker's fixture as it is;
- noise: `tests/noise.py` `mix` lays the hall's hum or the room's babble under it at 20 or 10 dB;
- echo: a loudspeaker next to the microphone plays the Spanish interpretation the room plays, 150 ms late,
  −10 dB, mixed live (`bench/hall/mic.py`); its words are added to the microphone's timeline as they come;
- cross-talk: speaker A says the script, B says the one sentence inside a pause of A's (made 2.4 s long for
  it, since the fixtures' pauses are 0.9–1 s and the sentence 1.3 s: after A's first sentence in the
  dialogue, after the fourth in the monologue); A's microphone = A + B at −12 dB 30 ms late, B's = B + A at
  −12 dB 30 ms late, and each timeline holds both voices' words;
- loss: the speaker's audio as an rtc subscriber receives it through the real LiveKit server behind the
  lossy relay (`bench/hall/received.py`), `loss` random loss, jitter 30 ± 20 ms.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agent.run.filemode import Pcm, read_wav
from bench.hall.words import Said, timed_script, timeline_of
from tests.conftest import DIALOGUE, MONOLOGUE, ONE_SENTENCE, Monologue, Scenario
from tests.fakes.timed_words import WordTimeline
from tests.noise import BABBLE, HUM, mix

RATE = 16000
A, B = "alice", "bob"
ECHO_DELAY_S, ECHO_GAIN_DB = 0.15, -10.0
BLEED_DELAY_S, BLEED_GAIN_DB = 0.03, -12.0
CROSS_PAUSE_S = 2.4  # the pause B speaks in
ECHO_TAIL_S = 6.0  # the microphone stays open after the speech, hearing the loudspeaker


@dataclass(frozen=True, slots=True)
class Condition:
    name: str
    kind: str  # clean | echo | crosstalk | noise | loss
    noise: str | None = None  # hum | babble
    snr_db: float = 0.0
    loss: float = 0.0


CONDITIONS = {
    c.name: c
    for c in (
        Condition("clean", "clean"),
        Condition("echo", "echo"),
        Condition("cross-talk", "crosstalk"),
        Condition("hum 20 dB", "noise", "hum", 20.0),
        Condition("hum 10 dB", "noise", "hum", 10.0),
        Condition("babble 20 dB", "noise", "babble", 20.0),
        Condition("babble 10 dB", "noise", "babble", 10.0),
        Condition("loss 2 %", "loss", loss=0.02),
        Condition("loss 5 %", "loss", loss=0.05),
        Condition("loss 10 %", "loss", loss=0.10),
    )
}
SPEECHES: dict[str, Scenario | Monologue] = {"dialogue": DIALOGUE, "monologue": MONOLOGUE}
CROSS_AFTER = {"dialogue": 1, "monologue": 4}  # B speaks after this many of A's sentences


@dataclass
class Mic:
    """One speaker's microphone: what it plays (`pcm`, before any live echo), the clean speech in it (the
    reference for voicing and mid-word cuts), the words reaching it, and the speaker's own script."""

    speaker: str
    pcm: np.ndarray
    reference: np.ndarray
    timeline: WordTimeline
    own: Said
    loudspeaker: bool = False
    heard_by: list[str] = field(default_factory=list)


def fixture(speech: str) -> tuple[np.ndarray, list[str]]:
    scenario = SPEECHES[speech]
    pcm = read_wav(scenario.wav)
    assert pcm.sample_rate == RATE
    return pcm.samples, list(scenario.transcripts)


def scaled(samples: np.ndarray, gain_db: float, delay_s: float, length: int) -> np.ndarray:
    out = np.zeros(length)
    shift = round(delay_s * RATE)
    part = samples[: max(0, length - shift)].astype(np.float64) * 10 ** (gain_db / 20)
    out[shift : shift + len(part)] = part
    return out


def s16(x: np.ndarray) -> np.ndarray:
    return np.clip(np.round(x), -32768, 32767).astype(np.int16)


def crosstalk(speech: str) -> list[Mic]:
    samples, sentences = fixture(speech)
    first = timed_script(A, samples, RATE, sentences)
    after = first.sentences[CROSS_AFTER[speech] - 1][2]
    before_next = first.sentences[CROSS_AFTER[speech]][1]
    cut = round((after + before_next) / 2 * RATE)
    a = np.concatenate([samples[:cut], np.zeros(round(CROSS_PAUSE_S * RATE), np.int16), samples[cut:]])
    own_a = timed_script(A, a, RATE, sentences)
    one = read_wav(ONE_SENTENCE.wav).samples
    one_said = timed_script(B, one, RATE, list(ONE_SENTENCE.transcripts))
    gap_start = own_a.sentences[CROSS_AFTER[speech] - 1][2]
    gap_end = own_a.sentences[CROSS_AFTER[speech]][1]
    b_span = one_said.sentences[0]
    at = (gap_start + gap_end) / 2 - (b_span[1] + b_span[2]) / 2  # B's sentence in the middle of the gap
    b = np.zeros(len(a), np.int16)
    i = round(at * RATE)
    b[i : i + len(one)] = one[: len(b) - i]
    own_b = one_said.shifted(i / RATE)
    mic_a = s16(a + scaled(b, BLEED_GAIN_DB, BLEED_DELAY_S, len(a)))
    mic_b = s16(b + scaled(a, BLEED_GAIN_DB, BLEED_DELAY_S, len(a)))
    heard_a = timeline_of(own_a, own_b.shifted(BLEED_DELAY_S, level_db=BLEED_GAIN_DB))
    heard_b = timeline_of(own_b, own_a.shifted(BLEED_DELAY_S, level_db=BLEED_GAIN_DB))
    return [Mic(A, mic_a, mic_a, heard_a, own_a), Mic(B, mic_b, mic_b, heard_b, own_b)]


async def received(samples: np.ndarray, loss: float) -> np.ndarray:
    """The speaker's audio as the ears receive it over the lossy relay (`bench/hall/received.py`: the real
    server, Opus with RED and DTX as a browser publishes, jitter 30 ± 20 ms; cached in bench-results/)."""
    from bench.hall.received import CACHE_DIR, received_over_relay

    got = await received_over_relay(Pcm(samples, RATE), loss=loss, cache_dir=CACHE_DIR)
    return np.asarray(got.pcm.samples[: len(samples)], np.int16)


async def mics(speech: str, condition: Condition) -> list[Mic]:
    if condition.kind == "crosstalk":
        return crosstalk(speech)
    samples, sentences = fixture(speech)
    own = timed_script(A, samples, RATE, sentences)
    played = samples
    if condition.kind == "noise":
        noise = read_wav(HUM if condition.noise == "hum" else BABBLE).samples
        played = mix(samples, noise, condition.snr_db)
    elif condition.kind == "loss":
        played = await received(samples, condition.loss)
    elif condition.kind == "echo":  # the last interpretation plays after the speech: the microphone hears it
        played = samples = np.concatenate([samples, np.zeros(round(ECHO_TAIL_S * RATE), np.int16)])
    return [Mic(A, played, samples, timeline_of(own), own, loudspeaker=condition.kind == "echo")]


def loss_available() -> str | None:
    """Why the loss conditions cannot run (None: they can)."""
    try:
        from tests.livekit_server import find_binary
    except ImportError as e:  # pragma: no cover (the tests' helpers are part of the repository)
        return str(e)
    if find_binary() is None:
        return "no livekit-server (export LIVEKIT_SERVER=$(./scripts/install-livekit-server))"
    return None
