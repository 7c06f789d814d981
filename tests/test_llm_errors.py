"""Only provider errors take the LLM outage path: a bug in an LLM plugin surfaces as itself."""

from __future__ import annotations

import asyncio
import logging

import pytest
from livekit.agents import llm

from agent.loops.brain.prompt import ContextBook
from agent.loops.brain.translate import Translator
from agent.providers.fallback_llm import FallbackLLM
from tests.buggy_plugins import BrokenPlugin, BrokenPluginError


async def test_a_bug_in_every_llm_plugin_is_raised_as_itself_not_retried_as_an_outage(
    caplog: pytest.LogCaptureFixture,
):
    plugins: list[llm.LLM] = [BrokenPlugin(), BrokenPlugin()]
    adapter = FallbackLLM(plugins, names=["first", "second"], attempt_timeout=1.0)
    faults: list[bool] = []
    translator = Translator(adapter, on_fault=faults.append)
    context = ContextBook("es").for_speaker("ann", "en")

    async def translate() -> list[str]:
        return [c async for c in translator.clauses(context, "Good morning.", utterance_id="u-0")]

    with caplog.at_level(logging.INFO), pytest.raises(BrokenPluginError):
        # taken for an outage, it would be retried with backoff for ever
        await asyncio.wait_for(translate(), 10)
    assert faults == []  # no LLM outage shown: the providers did nothing wrong
    assert not [r for r in caplog.records if "trying again" in r.getMessage()]
    # asked once: a bug is not an LLM failing, so no other LLM is asked and no probe sent
    assert [p.requests for p in plugins if isinstance(p, BrokenPlugin)] == [1, 0]
    await adapter.aclose()
