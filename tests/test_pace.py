from livekit.agents import llm

from agent.loops.brain.prompt import TranslationContext
from agent.loops.pace import Pace, PaceOptions


def test_normal_speed_with_idle_gaps_faster_when_busy_within_the_bound():
    pace = Pace(PaceOptions(idle_s=0.3, gain=1.0, max_speed=1.35, smoothing=1.0, concise_after_s=0.3))
    assert pace.speed == 1.0 and not pace.concise  # nothing observed yet
    pace.observe(-0.5)
    assert pace.speed == 1.0  # the track had been idle: no hurry
    pace.observe(0.2)
    assert pace.speed == 1.2 and not pace.concise  # the audio waited for the track
    pace.observe(0.6)
    assert pace.speed == 1.35 and pace.concise  # bounded; and further behind, tighter translations
    pace.observe(-1.0)
    assert pace.speed == 1.0 and not pace.concise  # caught up, with room to spare: back to normal


def test_with_a_backlog_speech_keeps_at_least_the_pace_of_the_speaker():
    pace = Pace(PaceOptions(idle_s=0.3, gain=0.5, max_speed=1.4, smoothing=1.0))
    pace.observe_ratio(translated_s=2.5, original_s=2.0)  # translations run 1.25x longer
    assert pace.speed == 1.0  # no backlog: no need to hurry
    pace.observe(-0.1)
    assert pace.speed == 1.25  # back to back: keep pace with the speaker
    pace.observe(0.2)
    assert pace.speed == 1.35  # 1.25 to keep pace, +0.1 to catch up


def test_observations_are_smoothed():
    pace = Pace(PaceOptions(idle_s=0.3, gain=1.0, smoothing=0.5, max_speed=2.0))
    pace.observe(1.0)
    pace.observe(0.0)
    assert pace.pressure_s == 0.5 and pace.speed == 1.5


def messages(chat: llm.ChatContext) -> list[llm.ChatMessage]:
    items = chat.items
    assert all(isinstance(item, llm.ChatMessage) for item in items)
    return [item for item in items if isinstance(item, llm.ChatMessage)]


def test_concise_requests_add_a_rule_without_losing_the_speech():
    ctx = TranslationContext(source_language="en", target_language="es")
    normal = messages(ctx.chat_context("so we will start"))
    tight = messages(ctx.chat_context("so we will start", concise=True))
    assert "concise" not in str(normal[0].content) and "concise" in str(tight[0].content)
    assert tight[-1].content == normal[-1].content
