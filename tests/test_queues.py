import asyncio

from agent.loops.models import Utterance
from agent.loops.queues import StepQueue, UtteranceQueue


def utt(i: int) -> Utterance:
    return Utterance(
        id=f"s-{i}", speaker="s", text=f"part {i}.", language="en",
        audio_start=i, audio_end=i + 0.5, speech_end_at=i + 0.5, final_at=i + 0.6,
    )  # fmt: skip


async def test_a_full_queue_folds_new_utterances_into_the_newest_and_never_blocks():
    q = UtteranceQueue(2)
    for i in range(5):
        q.put_nowait(utt(i))  # never blocks, never raises
    assert q.qsize() == 2 and q.merged == 3
    first, second = await q.get(), await q.get()
    assert first is not None and second is not None
    assert first.text == "part 0."
    assert second.text == "part 1. part 2. part 3. part 4."
    assert second.record_ids == ["s-1", "s-2", "s-3", "s-4"]
    assert second.audio_end == 4.5


async def test_get_waits_and_close_ends_after_draining():
    q = UtteranceQueue(4)
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.put_nowait(utt(1))
    q.close()
    got = await getter
    assert got is not None and got.id == "s-1"
    assert await q.get() is None


async def test_a_step_asked_for_again_while_it_waits_is_queued_once_and_order_is_kept():
    q: StepQueue[str] = StepQueue()
    q.put_nowait("settings", key="settings")
    for _ in range(100):  # a storm of room events: each asks for the same "look at the room" step
        q.put_nowait("room", key="room")
    q.put_nowait("mark-1")  # unkeyed steps are each queued
    q.put_nowait("mark-2")
    q.put_nowait("settings again", key="settings")
    assert q.qsize() == 4 and q.coalesced == 100
    assert [await q.get() for _ in range(2)] == ["settings", "room"]
    q.put_nowait("room", key="room")  # no longer waiting (it ran): queued again
    q.close()
    assert [await q.get() for _ in range(4)] == ["mark-1", "mark-2", "room", None]
