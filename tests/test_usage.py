"""What the providers are asked for, and what it costs (`agent/telemetry/usage.py`,
`agent/settings/prices.py`): the price table as an operator edits it, and the LLMs' usage counted by the
one that answered, a fallback's and a probe's included. (Speech-to-text seconds, TTS characters and the
cost line are tested through the file mode, tests/test_filemode.py; clone calls in tests/test_cloning.py;
per language in tests/test_audience.py; the job-end line in tests/test_real_room.py.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from livekit.agents import llm

from agent.providers.build import build_llm
from agent.settings.config import ConfigError, load_settings
from agent.settings.prices import DEFAULT_PRICES, ITEMS, load_prices
from agent.telemetry.usage import METER, Usage
from tests.conftest import Fakes, start_room_fakes, stop_fakes
from tests.loopback import eventually


def test_the_bundled_price_table_prices_every_item_used_and_says_where_each_price_comes_from():
    prices = load_prices()
    assert prices.date == "2026-12-07"
    for provider, item in (
        ("deepgram", "audio_seconds"),
        ("cerebras", "input_tokens"),
        ("cerebras", "output_tokens"),
        ("groq", "input_tokens"),
        ("groq", "output_tokens"),
        ("cartesia", "characters"),
        ("cartesia", "clone_characters"),
    ):
        price = prices.price(provider, "any-model", item)
        assert price is not None and price.usd_per_unit > 0 and price.source and price.read_on, (
            provider,
            item,
        )
    assert prices.cost("deepgram", "nova-3", "audio_seconds", 60) == pytest.approx(0.0077)
    assert DEFAULT_PRICES.name == "prices.toml" and set(ITEMS) >= {"clones", "clone_deletes"}


def test_a_broken_price_table_stops_the_start_naming_the_file_and_every_problem(tmp_path: Path):
    table = tmp_path / "prices.toml"
    table.write_text(
        '[[price]]\nprovider = "groq"\nitem = "tokens"\nusd = 1\n'  # not an item
        '[[price]]\nprovider = "groq"\nitem = "input_tokens"\nusd = -1\n'  # below zero
        '[[price]]\nprovider = "groq"\nusd = 1\n'  # no item
    )
    env = {
        "PRICES_FILE": str(table),
        "DEEPGRAM_API_KEY": "k",
        "CEREBRAS_API_KEY": "k",
        "CARTESIA_API_KEY": "k",
    }
    with pytest.raises(ConfigError) as raised:
        load_settings(env, require_livekit=False)
    (problem,) = [p for p in raised.value.problems if "PRICES_FILE" in p]
    assert str(table) in problem and "price #1" in problem and "price #2" in problem and "price #3" in problem
    table.write_text("not = [toml")
    with pytest.raises(ConfigError, match="not TOML"):
        load_settings(env, require_livekit=False)
    with pytest.raises(ConfigError, match="cannot be read"):
        load_settings({**env, "PRICES_FILE": str(tmp_path / "missing.toml")}, require_livekit=False)


@pytest.fixture
async def fakes():
    fakes = await start_room_fakes()
    try:
        yield fakes
    finally:
        await stop_fakes(fakes)


async def test_llm_usage_is_counted_by_the_llm_that_answered_a_fallbacks_and_a_probes_included(fakes: Fakes):
    settings = fakes.settings()
    model = build_llm(settings)
    usage = Usage(settings.prices)
    METER.set(usage.meter("es"))  # as a channel's task does: the streams' tasks inherit it

    async def ask() -> None:
        chat = llm.ChatContext()
        chat.add_message(role="user", content="Please turn on your camera.")
        async with model.chat(chat_ctx=chat) as stream:
            async for _ in stream:
                pass

    try:
        fakes.cerebras.outage_status = 503  # Cerebras down: Groq answers
        await ask()
        fakes.cerebras.outage_status = None
        await ask()  # Groq still answers; Cerebras is probed in the background, and answers
        await eventually(lambda: len(fakes.cerebras.usage_sent) == 1, what="the probe answered")
    finally:
        await model.aclose()
    for provider, fake in (("groq", fakes.groq), ("cerebras", fakes.cerebras)):
        sent = fake.usage_sent
        assert usage.total("input_tokens", provider=provider, language="es") == sum(
            u["prompt_tokens"] for u in sent
        )
        assert usage.total("output_tokens", provider=provider) == sum(u["completion_tokens"] for u in sent)
    assert len(fakes.groq.usage_sent) == 2
    priced = settings.prices
    groq_in = usage.total("input_tokens", provider="groq")
    assert usage.cost_usd == pytest.approx(
        sum(
            priced.cost(line.provider, line.model, line.item, amount)
            for line, amount in usage.amounts.items()
        )
    ) and usage.cost_usd > priced.cost("groq", "", "input_tokens", groq_in)


def test_audio_sent_is_counted_a_second_at_a_time_and_all_of_it_when_read():
    usage = Usage(load_prices())
    for _ in range(49):  # 0.98 s in 20 ms frames: nothing counted yet (the ears' loop stays light)
        usage.stt("ann", "nova-3", 0.02, "en")
    assert usage.cost_usd == 0 and not usage.amounts
    usage.stt("ann", "nova-3", 0.02, "en")  # a second: counted, and priced
    assert usage.cost_usd == pytest.approx(0.0077 / 60)
    for _ in range(10):
        usage.stt("ann", "nova-3", 0.02, "en")
    assert usage.total("audio_seconds", language="en") == pytest.approx(
        1.2
    )  # what was left, counted when read
    assert usage.summary()["stt_stream_seconds"] == [1.2]
