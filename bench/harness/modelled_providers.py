"""The modelled providers: the fake STT, LLM and TTS answering on the latency model (`model`), in a process of
their own (`modelled_providers`, through `provider_process`; the child is `python -m
bench.harness.modelled_providers CONFIG_JSON`). `GET /records` on the control URL returns what each fake did
(the delays it applied, per request: `fetch_records`); `POST /reset` clears (`reset_records`).
"""

from __future__ import annotations

import contextlib
import itertools
import re
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

import aiohttp
from aiohttp import web

from bench.harness.model import CHARS_PER_S, TTS_SECONDS_PER_CHAR, WORD, LatencyModel
from bench.harness.provider_process import provider_process, serve_main
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM, FluxTiming
from tests.fakes.llm import last_user_text
from tests.fakes.punctuation import punctuate

SPEECH_RE = re.compile(r"<speech[^>]*>(.*)</speech>", re.S)
CONCISE_MARK = "as concise as you can"
ID_RE = re.compile(r"\s*(\d{4})\b")
# tagged tones (`python -m bench room`): the first clause of each translation sounds at a frequency its
# id word picks, every other clause at OTHER_HZ, so a listener can tell where each utterance starts
TAG_HZ = tuple(500.0 + 100.0 * i for i in range(8))
OTHER_HZ = 300.0
# Deepgram punctuates, with a comma where the speaker pauses briefly between clauses (so the clause cut,
# CLAUSE_CUTS, has marks to find): the fake STT puts one at every silence this long inside the speech.
# 60 ms is our assumption, not a published figure (the synthetic speech's breaths are 80-200 ms). A
# transcription behaviour, not a latency: so not in the LatencyModel.
COMMA_PAUSE_S = 0.06


def tagged_freq(transcript: str) -> float:
    match = ID_RE.match(transcript)
    return TAG_HZ[int(match.group(1)) % len(TAG_HZ)] if match else OTHER_HZ


class WordsFor:
    """Transcripts for segments of speech: as many characters as the segment takes to say at
    CHARS_PER_S (the last word cut to fit), the first word a unique id. So the length of a text says
    how long it is spoken, on both sides, and `length_factor` is exactly the translated/original ratio.
    `preview`: the transcript of the speech so far, without using up its id (Flux's updates).
    `with_pauses` (tests/fakes/punctuation.py): a comma after the word before each pause, the words taken
    as said one after another at CHARS_PER_S, a word and its space (word k, from 0, ends at
    (k + 1) / WORDS_PER_S s, the last one cut short sooner); a comma adds a character."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self._next = next(self._ids)

    def __call__(self, duration_s: float) -> str:
        return self.with_pauses(duration_s, ())

    def preview(self, duration_s: float) -> str:
        return self.with_pauses(duration_s, (), preview=True)

    def with_pauses(self, duration_s: float, pauses_s: Sequence[float], *, preview: bool = False) -> str:
        target = max(5, round(duration_s * CHARS_PER_S))
        words, length = [f"{self._next:04d}"], 5  # with the final period
        while length < target:
            words.append(WORD[: max(1, min(len(WORD), target - length - 1))])
            length += len(words[-1]) + 1
        ends = list(itertools.accumulate((len(w) + 1) / CHARS_PER_S for w in words))
        if not preview:
            self._next = next(self._ids)
        return punctuate(words, ends, pauses_s, duration_s)


def words_for() -> WordsFor:
    return WordsFor()


def translator(length_factor: float, concise_factor: float) -> Callable[[list[dict[str, Any]]], str]:
    """A 'translation' `length_factor` times as long as the source in characters, so as long to say
    (the fake TTS speaks a fixed number of characters per second), keeping the source's id word;
    shorter when the prompt asks for conciseness. Commas every few words, like speech."""

    def reply(messages: list[dict[str, Any]]) -> str:
        text = last_user_text(messages)
        match = SPEECH_RE.search(text)
        source = (match.group(1) if match else text).strip()
        system = str(messages[0].get("content", "")) if messages else ""
        factor = concise_factor if CONCISE_MARK in system else length_factor
        words = source.rstrip(".").split() or ["0000"]
        target_chars = max(len(words[0]) + 1, round(len(source) * factor))
        out, length = [words[0]], len(words[0]) + 1  # + the final period
        while length < target_chars:
            word = "palabra"[: min(7, max(1, target_chars - length - 1))]
            out.append(word + ("," if len(out) % 5 == 4 else ""))
            length += len(out[-1]) + 1
        return " ".join(out).rstrip(",") + "."

    return reply


class Providers:
    def __init__(
        self, model: LatencyModel, *, length_factor: float, concise_factor: float, tag_tones: bool = False
    ) -> None:
        self.deepgram = FakeDeepgram(
            [],
            transcript_for=words_for(),
            finalize_delay=model.stt_finalize,
            seed=model.seed,
            flux_timing=FluxTiming(eot_delay=model.flux_eot, eager_lead=model.flux_eager_lead),
            comma_pause_s=COMMA_PAUSE_S,
        )
        self.llm = FakeLLM(
            responder=translator(length_factor, concise_factor),
            ttft=model.llm_ttft,
            tokens_per_s=model.llm_tokens_per_s,
            seed=model.seed + 1,
        )
        self.cartesia = FakeCartesia(
            ttfb=model.tts_ttfb,
            rtf=model.tts_rtf,
            tail_s=model.tts_tail_s,
            seconds_per_char=TTS_SECONDS_PER_CHAR,
            seed=model.seed + 2,
            freq_for=tagged_freq if tag_tones else None,
        )
        self._control = web.Application()
        self._control.router.add_get("/records", self._records)
        self._control.router.add_post("/reset", self._reset)
        self._runner: web.AppRunner | None = None
        self.control_url = ""

    async def start(self) -> dict[str, str]:
        for fake in (self.deepgram, self.llm, self.cartesia):
            await fake.start()
        self._runner = web.AppRunner(self._control, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.control_url = f"http://127.0.0.1:{port}"
        return {
            "deepgram": self.deepgram.base_url,
            "cerebras": self.llm.base_url,
            "groq": self.llm.openai_base_url,
            "cartesia": self.cartesia.base_url,
            "control": self.control_url,
        }

    async def aclose(self) -> None:
        for fake in (self.deepgram, self.llm, self.cartesia):
            await fake.aclose()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _records(self, _: web.Request) -> web.Response:
        return web.json_response(
            {
                "stt": [
                    {"text": f.transcript, "delay_s": f.delay_s, "forced": f.from_finalize}
                    for f in self.deepgram.finals
                ],
                "llm": [
                    {"source": last_user_text(r.messages), "reply": r.reply, "ttft_s": r.ttft_s}
                    for r in self.llm.requests
                ],
                "tts": [
                    {
                        "text": " ".join(t.strip() for t in transcripts if t.strip()),
                        "ttfb_s": self.cartesia.ttfb_by_context.get(ctx, 0.0),
                        "speed": self.cartesia.speed_by_context.get(ctx, 1.0),
                    }
                    for ctx, transcripts in self.cartesia.contexts.items()
                ],
            }
        )

    async def _reset(self, _: web.Request) -> web.Response:
        self.deepgram.finals.clear()
        self.llm.requests.clear()
        self.cartesia.contexts.clear()
        return web.json_response({"ok": True})


@contextlib.asynccontextmanager
async def modelled_providers(
    model: LatencyModel, *, length_factor: float, concise_factor: float = 1.05, tag_tones: bool = False
) -> AsyncIterator[dict[str, str]]:
    """The fake providers on `model`, in their own process; yields their URLs (and its `pid`).
    `tag_tones`: each translation's first clause at a frequency its id picks (`tagged_freq`)."""
    config = {
        "model": model.as_dict(),
        "length_factor": length_factor,
        "concise_factor": concise_factor,
        "tag_tones": tag_tones,
    }
    async with provider_process("bench.harness.modelled_providers", config) as urls:
        yield urls


def from_config(config: dict[str, Any]) -> Providers:
    return Providers(
        LatencyModel.from_dict(config["model"]),
        length_factor=config["length_factor"],
        concise_factor=config["concise_factor"],
        tag_tones=config.get("tag_tones", False),
    )


async def fetch_records(urls: dict[str, str], http: aiohttp.ClientSession) -> dict[str, list[dict]]:
    async with http.get(urls["control"] + "/records") as resp:
        records: dict[str, list[dict]] = await resp.json()
        return records


async def reset_records(urls: dict[str, str], http: aiohttp.ClientSession) -> None:
    async with http.post(urls["control"] + "/reset") as resp:
        await resp.read()


if __name__ == "__main__":
    serve_main(from_config)
