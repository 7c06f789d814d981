"""Steady noise under the committed speech fixtures: a hall's hum and a room's babble, at a chosen SNR.

The noise fixtures (`tests/fixtures/hum.wav`, `tests/fixtures/babble.wav`, 16 kHz mono s16, 4 s) are made by
this module (`uv run python -m tests.noise`): the hum with numpy from a fixed seed, the babble with espeak-ng
(five voices speaking different sentences at once). `mix` lays one under speech, looped to its length, so
that the noise's RMS is `snr_db` below the speech's level (the RMS of its voiced 20 ms frames: the speech
as it is heard, not diluted by its pauses).
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

import numpy as np
from livekit import rtc

from agent.loops.ears.pauses import PauseDetector, PausePolicy
from agent.loops.ears.voicing import VoiceGate, is_voiced
from agent.run.filemode import read_wav, resample, write_wav

RATE = 16000
NOISE_S = 4.0
FIXTURES = Path(__file__).parent / "fixtures"
HUM = FIXTURES / "hum.wav"
BABBLE = FIXTURES / "babble.wav"
SEED = 22
_FRAME = RATE // 50  # 20 ms
_LEVEL_GATE = 0.01  # frames louder than this (about -40 dBFS) make the speech's level
_PEAK = 0.5  # the fixtures' peak (full scale 1.0); `mix` scales them anyway


def rms(samples: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(samples.astype(np.float64) / 32768.0))))


def speech_level(speech: np.ndarray) -> float:
    """The RMS of the speech's voiced 20 ms frames (full scale 1.0)."""
    frames = speech[: len(speech) // _FRAME * _FRAME].astype(np.float64).reshape(-1, _FRAME) / 32768.0
    energies = np.mean(np.square(frames), axis=1)
    voiced = energies[energies >= _LEVEL_GATE**2]
    return float(np.sqrt(np.mean(voiced)))


def mix(speech: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """`noise` looped under `speech` (s16), `snr_db` below the speech's level; clipped to s16."""
    looped = np.resize(noise, len(speech)).astype(np.float64)
    gain = speech_level(speech) * 10 ** (-snr_db / 20) / rms(noise)
    out = speech.astype(np.float64) + looped * gain
    return np.clip(np.round(out), -32768, 32767).astype(np.int16)


def with_dropouts(samples: np.ndarray, at: list[tuple[float, float]], level: int = 0) -> np.ndarray:
    """`samples` with each (start s, length s) span replaced by digital silence (`level`: +-level of noise
    instead, as a concealment fading out leaves)."""
    out = samples.copy()
    rng = np.random.default_rng(SEED)
    for start, length in at:
        i, n = round(start * RATE), round(length * RATE)
        out[i : i + n] = rng.integers(-level, level + 1, n) if level else 0
    return out


def frames(samples: np.ndarray, frame_ms: int = 20, rate: int = RATE) -> list[rtc.AudioFrame]:
    step = rate * frame_ms // 1000
    return [
        rtc.AudioFrame(samples[i : i + step].tobytes(), rate, 1, step)
        for i in range(0, len(samples) - step + 1, step)
    ]


def cut_times(
    samples: np.ndarray, pause_s: float = 0.12, skip: set[int] | None = None, gate: VoiceGate | None = None
) -> list[float]:
    """Where the pause detector (PAUSE_CUT_MS = `pause_s`) would end a segment in `samples` (seconds of
    the timeline), cutting each time; `skip`: frames (by index, 20 ms) that never arrive."""
    detector = PauseDetector(PausePolicy(pause_s=pause_s), gate)
    out = []
    for i, frame in enumerate(frames(samples)):
        if skip and i in skip:
            continue
        detector.hear(frame)
        if detector.cut_due():
            out.append(round(detector.timeline, 3))
            detector.cut()
    return out


def clean_pauses(clean: np.ndarray, min_s: float = 0.4) -> list[tuple[float, float]]:
    """The silences of at least `min_s` after speech in clean speech (the fixed gate, 20 ms frames)."""
    voiced = [is_voiced(np.frombuffer(f.data, np.int16)) for f in frames(clean)]
    out, quiet_from, spoke = [], None, False
    for i, v in enumerate([*voiced, True]):
        if v:
            if quiet_from is not None and spoke and (i - quiet_from) * 0.02 >= min_s - 1e-6:
                out.append((quiet_from * 0.02, min(i, len(voiced)) * 0.02))
            quiet_from, spoke = None, True
        elif quiet_from is None:
            quiet_from = i
    return out


def mid_word(clean: np.ndarray, cut: float, within_s: float = 0.02) -> bool:
    """Whether a cut at `cut` (s) splits speech: the clean speech is voiced (10 ms windows, the fixed gate)
    both in the `within_s` before it and in the `within_s` after it."""
    step = RATE // 100

    def voiced(start_s: float, end_s: float) -> bool:
        start, end = max(0, round(start_s * RATE)), min(len(clean), round(end_s * RATE))
        return any(is_voiced(clean[i : i + step]) for i in range(start, end - step + 1, step // 2))

    return voiced(cut - within_s, cut) and voiced(cut, cut + within_s)


def judge(clean: np.ndarray, cuts: list[float]) -> tuple[int, int, int]:
    """(clean pauses with a cut in them, clean pauses, cuts mid-word) for cuts made in a mix of `clean`."""
    pauses = clean_pauses(clean)
    found = sum(any(a <= c <= b for c in cuts) for a, b in pauses)
    return found, len(pauses), sum(mid_word(clean, c) for c in cuts)


def _s16(signal: np.ndarray) -> np.ndarray:
    return np.round(signal / np.max(np.abs(signal)) * _PEAK * 32767).astype(np.int16)


def make_hum(seconds: float = NOISE_S, seed: int = SEED) -> np.ndarray:
    """Mains hum (50 Hz and its harmonics, a whole number of cycles: it loops without a click) over pink
    noise of the same power (white noise shaped 1/f in the frequency domain: circular, so it loops too)."""
    n = round(seconds * RATE)
    t = np.arange(n) / RATE
    hum = sum(a * np.sin(2 * np.pi * f * t) for f, a in ((50, 1.0), (100, 0.6), (150, 0.3), (200, 0.15)))
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[1:] /= np.sqrt(freqs[1:])
    spectrum[0] = 0
    pink = np.fft.irfft(spectrum, n)
    pink *= np.sqrt(np.mean(np.square(hum))) / np.sqrt(np.mean(np.square(pink)))
    return _s16(hum + pink)


BABBLE_VOICES = [
    ("en-us", 160, 40, "The quarterly numbers came in later than we expected this time around."),
    ("en-gb", 175, 60, "I think the train from the airport was delayed again this morning."),
    ("en-gb-scotland", 150, 30, "Could somebody pass the water over to this side of the table please."),
    ("en-029", 170, 70, "We should book the bigger room for the workshop next Thursday."),
    ("en-gb-x-rp", 185, 50, "Remember that the coffee machine on the third floor is broken."),
]


def make_babble(seconds: float = NOISE_S, seed: int = SEED) -> np.ndarray:
    """Five espeak-ng voices, each saying its own sentence, each started at its own point, summed."""
    n = round(seconds * RATE)
    rng = np.random.default_rng(seed)
    total = np.zeros(n)
    with tempfile.TemporaryDirectory() as tmp:
        for i, (voice, wpm, pitch, text) in enumerate(BABBLE_VOICES):
            path = Path(tmp) / f"v{i}.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(wpm), "-p", str(pitch), "-w", str(path), text],
                check=True,
            )
            voice_pcm = read_wav(path)
            samples = resample(voice_pcm, RATE).astype(np.float64)
            samples /= rms(samples.astype(np.int16)) * 32768.0  # each voice at the same level
            voice_loop = np.resize(samples, len(samples) + n)
            start = int(rng.integers(0, len(samples)))
            total += voice_loop[start : start + n]
    return _s16(total)


def main() -> None:
    write_wav(HUM, [make_hum()], RATE)
    write_wav(BABBLE, [make_babble()], RATE)
    print(f"wrote {HUM} and {BABBLE}")


if __name__ == "__main__":
    main()
