from agent.pace import Pace, PaceOptions
from agent.prompt import TranslationContext


def test_normal_speed_while_on_time_faster_when_behind_within_the_bound():
    pace = Pace(PaceOptions(target_lag_s=0.8, gain=1.0, max_speed=1.35, smoothing=1.0))
    assert pace.speed == 1.0 and not pace.concise  # nothing observed yet
    pace.observe(0.6)
    assert pace.speed == 1.0
    pace.observe(1.0)
    assert pace.speed == 1.2 and not pace.concise
    pace.observe(1.5)
    assert pace.speed == 1.35 and pace.concise  # bounded; and further behind, tighter translations
    pace.observe(0.7)
    assert pace.speed == 1.0 and not pace.concise  # back on time: back to normal


def test_observations_are_smoothed():
    pace = Pace(PaceOptions(target_lag_s=0.0, smoothing=0.5, max_speed=2.0))
    pace.observe(1.0)
    pace.observe(0.0)
    assert pace.lag_s == 0.5 and pace.speed == 1.5


def test_concise_requests_add_a_rule_without_losing_the_speech():
    ctx = TranslationContext(source_language="en", target_language="es")
    normal = ctx.chat_context("so we will start").items
    tight = ctx.chat_context("so we will start", concise=True).items
    assert "concise" not in str(normal[0].content) and "concise" in str(tight[0].content)
    assert tight[-1].content == normal[-1].content
