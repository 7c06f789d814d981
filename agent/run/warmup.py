"""A job process's warm-up: whatever a job needs that does not depend on its room is made in the framework's
`setup_fnc`, which runs in each job process before it is handed a job, so that a job starts without
blocking its event loop (a blocked loop is a late interpreter, and under a burst of rooms each block grows
with the CPU the other starting jobs take).

What a job used to make on its loop at start, each a block the framework's loop monitor reported
("event loop blocked for ... ms"): the LLM clients (the Cerebras SDK's and the OpenAI SDK's httpx clients
each load the CA bundle into an SSL context, ~120-170 ms), the framework's shared aiohttp session (its own
SSL context, the same again), and anyio's asyncio back end (imported by httpcore on the first request,
~140 ms). What stays in the job because it depends on the room: one TTS per language and voice (cheap: the
aiohttp sessions they use share aiohttp's SSL context, made at import).

Objects made here are used on the job's event loop, which does not exist yet: the httpx clients and the
framework's http context bind to a loop when first used, not when built (httpcore creates its locks and
connections on the first request; `utils.http_context` makes the job's session inside the job), and an
SSL context belongs to no loop. livekit-agents 1.8.9 runs one job per process
(`ipc/job_proc_lazy_main.py`: the process exits once its job has ended), so a process's warmed providers
serve exactly one job.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import anyio.lowlevel
from livekit.agents import JobProcess, utils
from livekit.agents.llm import LLM
from livekit.agents.stt import STT

from agent.providers.build import build_llm, build_stt
from agent.settings.config import Settings, load_settings, read_environment

_PROVIDERS = "interpreter.providers"


@dataclass(frozen=True, slots=True)
class JobProviders:
    """The providers a job uses whatever its room: the LLM (Cerebras, then Groq) and the STT (each
    speaker's stream is opened with its own language)."""

    llm: LLM
    stt: STT

    @classmethod
    def build(cls, settings: Settings) -> JobProviders:
        return cls(llm=build_llm(settings), stt=build_stt(settings, settings.source_language, None))


def prewarm(proc: JobProcess) -> None:
    """Per job process, before its job: validate the settings, build the providers, and pay the one-off
    costs of a first TLS context and a first request here rather than on the job's event loop."""
    import cerebras.cloud.sdk.resources.chat.completions  # noqa: F401  (the SDK loads it lazily, ~35 ms)

    settings = load_settings(read_environment())
    proc.userdata["settings"] = settings
    proc.userdata[_PROVIDERS] = JobProviders.build(settings)
    asyncio.run(_warm_loop_side(), debug=False)  # a throwaway loop: no slow-callback report for it


async def _warm_loop_side() -> None:
    """On a throwaway loop, what is built once per process on first use and kept: the framework's SSL
    context for its shared http session (cached; the job's own session reuses it) and anyio's asyncio back
    end (httpcore's locks load it on a client's first request)."""
    async with utils.http_context.open():
        pass
    await anyio.lowlevel.checkpoint()


def job_providers(proc: JobProcess, settings: Settings) -> JobProviders:
    """The providers warmed up for this process, taken once; built now if the process was not warmed."""
    warm = proc.userdata.pop(_PROVIDERS, None)
    return warm if isinstance(warm, JobProviders) else JobProviders.build(settings)
