"""`python -m bench noise`: the ears' pauses in steady noise, the adaptive gate against the fixed one.

The committed speech fixtures (the dialogue, the monologue) clean and with a hall's hum or a room's babble
under them at 20 and 10 dB below the speech (`tests/noise.py`), through the pause detector at the default
PAUSE_CUT_MS, 20 ms frames. For each: the clean speech's pauses (silences of 0.4 s and more after speech)
with a cut in them, against all of them; cuts that split a word (the clean speech voiced on both sides of
the cut, 20 ms); other cuts (in a gap between words, or a second one in a pause); how late the first cut in
each pause comes after the pause began (mean, ms; 120 ms in clean speech); and the CPU time of the detector
per frame (µs, process time, the best of `--repeat` runs). `today` is the fixed −40 dBFS gate; with
`--silero`, Silero's VAD too (`SileroGate`: its model ships in livekit-plugins-silero, not in the lock).
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numpy as np

from agent.loops.ears.pauses import PauseDetector, PausePolicy
from agent.loops.ears.voicing import VoiceGate, Voicing, is_voiced
from agent.run.filemode import read_wav
from tests.conftest import DIALOGUE, MONOLOGUE
from tests.noise import BABBLE, HUM, clean_pauses, cut_times, frames, judge, mix

CONDITIONS: dict[str, tuple[str | None, float]] = {
    "clean": (None, 0.0),
    "hum 20 dB": ("hum", 20.0),
    "hum 10 dB": ("hum", 10.0),
    "babble 20 dB": ("babble", 20.0),
    "babble 10 dB": ("babble", 10.0),
}


class FixedGate(VoiceGate):
    """Today's gate: voiced above about -40 dBFS, whatever the room."""

    def hear(self, samples: np.ndarray, duration: float) -> Voicing:
        return Voicing.VOICED if is_voiced(samples) else Voicing.QUIET


class SileroGate(VoiceGate):
    """Silero's voice activity model (livekit-plugins-silero's ONNX model, CPU) as the gate: speech where its
    probability is over 0.5 (the plugin's activation threshold). It takes 512-sample windows (32 ms at
    16 kHz) in order: a frame's verdict is that of the last whole window heard."""

    def __init__(self) -> None:
        super().__init__()
        from livekit.plugins.silero import onnx_model  # not a dependency: `--silero` says how to add it

        session = onnx_model.new_inference_session(force_cpu=True)
        self._model = onnx_model.OnnxModel(onnx_session=session, sample_rate=16000)
        self._pending = np.zeros(0, np.float32)
        self._speech = False

    def hear(self, samples: np.ndarray, duration: float) -> Voicing:
        window = self._model.window_size_samples
        self._pending = np.concatenate([self._pending, samples.astype(np.float32) / 32768.0])
        while len(self._pending) >= window:
            self._speech = self._model(self._pending[:window]) > 0.5
            self._pending = self._pending[window:]
        return Voicing.VOICED if self._speech else Voicing.QUIET


GATES: dict[str, Callable[[], VoiceGate]] = {"today": FixedGate, "adaptive": VoiceGate}
SILERO_HINT = "uv run --with livekit-plugins-silero==1.8.9 python -m bench noise --silero"


def cpu_us_per_frame(audio: np.ndarray, gate: Callable[[], VoiceGate], repeat: int) -> float:
    timed = frames(audio)
    best = float("inf")
    for _ in range(repeat):
        detector = PauseDetector(PausePolicy(pause_s=0.12), gate())
        start = time.process_time()
        for frame in timed:
            detector.hear(frame)
            detector.cut_due()
        best = min(best, time.process_time() - start)
    return best / len(timed) * 1e6


def row(clean: np.ndarray, audio: np.ndarray, gate: Callable[[], VoiceGate], repeat: int) -> list[str]:
    cuts = cut_times(audio, gate=gate())
    found, expected, split = judge(clean, cuts)
    late = [min((c for c in cuts if a <= c <= b), default=np.nan) - a for a, b in clean_pauses(clean)]
    lateness = f"{np.nanmean(late) * 1000:.0f}" if found else "-"
    other = len(cuts) - found - split
    cpu = cpu_us_per_frame(audio, gate, repeat)
    return [f"{found}/{expected}", str(split), str(other), lateness, f"{cpu:.1f}"]


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench noise", description=__doc__)
    parser.add_argument("--repeat", type=int, default=5, help="CPU: the best of this many runs (default 5)")
    parser.add_argument("--silero", action="store_true", help=f"Silero's VAD as a third gate: {SILERO_HINT}")
    args = parser.parse_args(argv)
    gates = dict(GATES)
    if args.silero:
        try:
            import livekit.plugins.silero  # noqa: F401
        except ImportError:
            parser.error(f"--silero needs livekit-plugins-silero (not in the lock): {SILERO_HINT}")
        gates["silero"] = SileroGate
    load_before = os.getloadavg()[0]
    noises = {"hum": read_wav(HUM).samples, "babble": read_wav(BABBLE).samples}
    head = ["speech", "condition", "gate", "pauses found", "mid-word", "other cuts", "late ms", "µs/frame"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, scenario in (("dialogue", DIALOGUE), ("monologue", MONOLOGUE)):
        clean = read_wav(scenario.wav).samples
        for condition, (noise, snr_db) in CONDITIONS.items():
            audio = clean if noise is None else mix(clean, noises[noise], snr_db)
            for gate_name, gate in gates.items():
                cells = [name, condition, gate_name, *row(clean, audio, gate, args.repeat)]
                print("| " + " | ".join(cells) + " |")
    load_after = os.getloadavg()[0]
    print(f"\nmachine: {os.cpu_count()} cores, load average {load_before:.2f} before, {load_after:.2f} after")
