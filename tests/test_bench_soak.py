"""The soak (`python -m bench soak`) runs and samples what it says: a few simulated seconds through a whole
room session (two speakers, en ↔ es), and the containers it samples hold every key with sane values. The
soak reads what the loops expose, so a rename in them fails here, not only in an hour-long run nobody
starts."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from bench.soak.run import Soak, SoakOptions

SOAK = Path(__file__).parent.parent / "bench" / "soak"

SESSION_KEYS = {
    "tracker.open",
    "tracker.completed",
    "tracker.samples.max",
    "session.speakers",
    "session.outputs",
    "session.control_queue",
    "session.ears_started",
    "publisher.queue",
    "publisher.tracks",
    "stt.streams",
    "session.faults",
    "llm.resumes",
    "llm.guard_rejections",
    "fake_room.texts",
    "fake_room.attribute_log",
}
EARS_KEYS = ("pending_frames", "audio_clock_points", "reconnects", "dropped_audio_s")
CHANNEL_KEYS = (
    "contexts",
    "brain_tasks",
    "inbox",
    "inbox_merged",
    "speeches",
    "mouth.played",
    "played_audio_s",
    "tts.streams",
)


async def test_a_short_soak_samples_every_container_with_sane_values() -> None:
    result: dict[str, Any] = await Soak(SoakOptions(minutes=0.25, warmup_s=5.0, type_growth=False)).run()

    assert result["utterances_heard"] > 0
    assert result["utterances_spoken"] > 0 and result["utterances_failed"] == 0
    assert [s["label"] for s in result["samples"]] == ["start", "0 min"]
    c = result["containers_end"]
    expected = set(SESSION_KEYS)
    expected |= {f"ears[{who}].{key}" for who in ("alice", "bob") for key in EARS_KEYS}
    expected |= {f"channel[{lang}].{key}" for lang in ("en", "es") for key in CHANNEL_KEYS}
    expected |= {"channel[es].context_pairs[alice,en]", "channel[en].context_pairs[bob,es]"}
    assert expected <= set(c), sorted(expected - set(c))
    for sample in result["samples"]:
        assert set(sample["containers"]) == set(c)

    assert c["session.speakers"] == 2 and c["session.outputs"] == 2
    assert c["session.ears_started"] == 2  # one identity each
    assert c["session.control_queue"] == 0 and c["session.faults"] == 0
    assert c["llm.resumes"] >= 0 and c["llm.guard_rejections"] >= 0  # this process's, other tests' too
    assert 1 <= c["stt.streams"] <= 4  # each speaker's, and maybe one being let go
    assert 0 < c["tracker.samples.max"] <= result["utterances_spoken"]
    assert c["tracker.completed"] == result["utterances_spoken"]
    for who in ("alice", "bob"):
        # bounded: the audio since the last final word (the replay buffer holds at most 30 s of 20 ms)
        assert 0 <= c[f"ears[{who}].pending_frames"] <= 1500
        assert 0 < c[f"ears[{who}].audio_clock_points"] <= 6000  # one a frame, at most its window
        assert c[f"ears[{who}].reconnects"] == 0 and c[f"ears[{who}].dropped_audio_s"] == 0
    for lang, source in (("en", "bob,es"), ("es", "alice,en")):
        assert c[f"channel[{lang}].contexts"] == 1  # one speaker into each language
        assert 1 <= c[f"channel[{lang}].context_pairs[{source}]"] <= 4
        assert c[f"channel[{lang}].brain_tasks"] == 0  # drained before the sample
        assert c[f"channel[{lang}].inbox"] == 0 and c[f"channel[{lang}].speeches"] == 0
        assert c[f"channel[{lang}].mouth.played"] > 0 and c[f"channel[{lang}].played_audio_s"] > 0
        assert 0 <= c[f"channel[{lang}].tts.streams"] <= 10
    assert result["tasks"]["after_close"] <= result["tasks"]["before_session"] + 1


def test_the_soak_reads_no_private_attribute() -> None:
    """What it samples comes from public surface: ours, or the framework's (no `getattr(x, "_name")`, no
    `x._name` of an object not its own)."""
    for path in SOAK.glob("*.py"):
        source = path.read_text()
        assert not re.search(r"getattr\([^)]*[\"']_", source), path.name
        assert not re.search(r"(?<!\bself)(?<!\bcls)\.\_[a-z]\w*", source), path.name
