"""The fake providers on a latency model, in a process of their own (so their CPU is not the worker's).

    python -m bench.providers MODEL_JSON

prints one JSON line with the base URLs, then serves until its standard input closes. `GET /records`
on the control URL returns what each fake did (the delays it applied, per request); `POST /reset` clears.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import re
import sys
from collections.abc import Callable
from typing import Any

from aiohttp import web

from bench.model import TTS_SECONDS_PER_CHAR, WORD, WORDS_PER_S, LatencyModel
from tests.fakes import FakeCartesia, FakeDeepgram, FakeLLM
from tests.fakes.llm import last_user_text

SPEECH_RE = re.compile(r"<speech[^>]*>(.*)</speech>", re.S)
CONCISE_MARK = "as concise as you can"


def words_for() -> Callable[[float], str]:
    """Transcripts for segments of speech: fixed-size words at WORDS_PER_S, the first one a unique id."""
    ids = itertools.count(1)

    def make(duration_s: float) -> str:
        n = max(1, round(duration_s * WORDS_PER_S))
        return " ".join([f"{next(ids):04d}", *[WORD] * (n - 1)]) + "."

    return make


def translator(length_factor: float, concise_factor: float) -> Callable[[list[dict[str, Any]]], str]:
    """A 'translation' `length_factor` times as long as the source (and as long to say), keeping the
    source's id word; shorter when the prompt asks for conciseness. Commas every few words, like speech."""

    def reply(messages: list[dict[str, Any]]) -> str:
        text = last_user_text(messages)
        match = SPEECH_RE.search(text)
        source = (match.group(1) if match else text).strip()
        system = str(messages[0].get("content", "")) if messages else ""
        factor = concise_factor if CONCISE_MARK in system else length_factor
        words = source.rstrip(".").split()
        n = max(1, round(len(words) * factor))
        out = [words[0] if words else "0000", *["palabra"[: len(WORD)]] * (n - 1)]
        for i in range(4, len(out), 5):
            out[i] += ","
        return " ".join(out).rstrip(",") + "."

    return reply


class Providers:
    def __init__(self, model: LatencyModel, *, length_factor: float, concise_factor: float) -> None:
        self.deepgram = FakeDeepgram(
            [], transcript_for=words_for(), finalize_delay=model.stt_finalize, seed=model.seed
        )
        self.llm = FakeLLM(
            responder=translator(length_factor, concise_factor),
            ttft=model.llm_ttft,
            tokens_per_s=model.llm_tokens_per_s,
            seed=model.seed + 1,
        )
        self.cartesia = FakeCartesia(
            ttfb=model.tts_ttfb, rtf=model.tts_rtf, seconds_per_char=TTS_SECONDS_PER_CHAR, seed=model.seed + 2
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


async def serve(model: LatencyModel, length_factor: float, concise_factor: float) -> None:
    providers = Providers(model, length_factor=length_factor, concise_factor=concise_factor)
    urls = await providers.start()
    print(json.dumps(urls), flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    await providers.aclose()


def main() -> None:
    config = json.loads(sys.argv[1])
    model = LatencyModel.from_dict(config["model"])
    asyncio.run(serve(model, config["length_factor"], config["concise_factor"]))


if __name__ == "__main__":
    main()
