"""The latency model the fake providers answer on, with defaults from published provider figures.

Sources (cite, don't trust blindly; see the shared notes): Deepgram Nova-3 streaming finalizes in
"sub-150 ms"; Cerebras serves gpt-oss-120b at ~3,000 tokens/s (Groq ~500 tokens/s); Cartesia Sonic
quotes "90 ms model latency" and a first audio chunk at ~135 ms. Time to first token of gpt-oss-120b
at low reasoning effort is not published: 200 ms (network + a short reasoning preamble) is assumed.
Deepgram Flux (`DEEPGRAM_MODEL=flux-general-en`): its end of turn comes about 260 ms after the speech ends
at p50 (Deepgram), its eager end of turn about 150-250 ms sooner (Deepgram's and Telnyx's figures; none is
published for eager alone), its updates every 0.25 s of audio (tests/fakes/flux.py's `FluxTiming`).
Every figure is settable on the command line.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field

from tests.fakes.latency_model import Delay


@dataclass(frozen=True, slots=True)
class LatencyModel:
    stt_finalize: Delay = field(default_factory=lambda: Delay(0.12, 0.03))  # after the endpoint / Finalize
    llm_ttft: Delay = field(default_factory=lambda: Delay(0.20, 0.05))
    llm_tokens_per_s: float = 3000.0
    tts_ttfb: Delay = field(default_factory=lambda: Delay(0.135, 0.03))
    tts_rtf: float = 0.25  # seconds to synthesize one second of audio after the first chunk
    # silence ending each TTS context's audio: Cartesia documents none and no figure was found, so 0
    tts_tail_s: float = 0.0
    flux_eot: Delay = field(default_factory=lambda: Delay(0.26, 0.06))  # after the speech ends
    flux_eager_lead: Delay = field(default_factory=lambda: Delay(0.2, 0.05))  # ... how much sooner
    seed: int = 7

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LatencyModel:
        """The model `add_model_arguments`' command-line options describe."""

        def delay(ms: float) -> Delay:
            return Delay(ms / 1000, ms / 1000 * args.jitter)

        return cls(
            stt_finalize=delay(args.stt_ms),
            llm_ttft=delay(args.llm_ttft_ms),
            llm_tokens_per_s=args.llm_tps,
            tts_ttfb=delay(args.tts_ttfb_ms),
            tts_rtf=args.tts_rtf,
            tts_tail_s=args.tts_tail_ms / 1000,
            flux_eot=delay(args.flux_eot_ms),
            flux_eager_lead=delay(args.flux_eager_lead_ms),
        )

    @classmethod
    def from_dict(cls, d: dict[str, object]) -> LatencyModel:
        def delay(v: object) -> Delay:
            assert isinstance(v, dict)
            return Delay(float(v["mean_s"]), float(v["jitter_s"]))

        return cls(
            stt_finalize=delay(d["stt_finalize"]),
            llm_ttft=delay(d["llm_ttft"]),
            llm_tokens_per_s=float(d["llm_tokens_per_s"]),  # type: ignore[arg-type]
            tts_ttfb=delay(d["tts_ttfb"]),
            tts_rtf=float(d["tts_rtf"]),  # type: ignore[arg-type]
            tts_tail_s=float(d.get("tts_tail_s", 0.0)),  # type: ignore[arg-type]
            flux_eot=delay(d.get("flux_eot", {"mean_s": 0.26, "jitter_s": 0.06})),
            flux_eager_lead=delay(d.get("flux_eager_lead", {"mean_s": 0.2, "jitter_s": 0.05})),
            seed=int(d["seed"]),  # type: ignore[call-overload]
        )


# The synthetic speech: words of one fixed size spoken at a fixed rate, so the text's length says how
# long it takes to say, and translated speech runs `length_factor` times as long as the original.
WORD = "word"
WORDS_PER_S = 2.5
CHARS_PER_S = WORDS_PER_S * (len(WORD) + 1)
TTS_SECONDS_PER_CHAR = 1 / CHARS_PER_S


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The latency model's command-line options (defaults as above)."""
    parser.add_argument("--stt-ms", type=float, default=120, help="STT finalize delay mean (ms)")
    parser.add_argument("--llm-ttft-ms", type=float, default=200)
    parser.add_argument("--llm-tps", type=float, default=3000)
    parser.add_argument("--tts-ttfb-ms", type=float, default=135)
    parser.add_argument("--tts-rtf", type=float, default=0.25)
    tail = "silence ending each TTS context (ms; unknown for Cartesia)"
    parser.add_argument("--tts-tail-ms", type=float, default=0, help=tail)
    parser.add_argument("--flux-eot-ms", type=float, default=260, help="Flux: end of turn after the speech")
    lead = "Flux: its eager end of turn comes this much sooner (ms)"
    parser.add_argument("--flux-eager-lead-ms", type=float, default=200, help=lead)
    parser.add_argument("--jitter", type=float, default=0.25, help="jitter as a fraction of each mean")
