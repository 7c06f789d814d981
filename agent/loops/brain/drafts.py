"""Draft translations: started on an eager end of turn, used when the turn's final says the same.

Deepgram Flux's eager end of turn (`EagerEndOfTurn`) comes 150-250 ms before its end of turn, with the
transcript the end of turn will most likely have. The brain starts translating that transcript at once (a
draft), but nothing of it is spoken or captioned: when the final comes with the same text, its translation
is the draft's (already under way, or done), so the listener waits for no LLM; a final with another text is
translated anew and the draft thrown away; a turn that resumed withdraws the draft. The draft's first
clause is synthesized ahead too (`prepare`: `Synthesizer.prepare`), its audio kept until the final takes
it, so the listener waits for neither the LLM nor the TTS's first audio. A draft thrown away cost an LLM
request and one clause's synthesis. Counted by outcome (`interpreter_drafts_total`): used, changed,
discarded; the requests drafts cost for nothing are the last two.

One draft per speaker at most; each holds the translation's clauses as they come, for the final to replay.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

from agent.loops.brain.prompt import ContextBook
from agent.loops.brain.synthesis import PreparedClause
from agent.loops.brain.translate import Translator
from agent.loops.brain.unfolding import Unfolding
from agent.loops.models import Utterance
from agent.telemetry import metrics
from agent.telemetry.latency import Clock

logger = logging.getLogger("agent.brain")


class Draft(Unfolding[str]):
    """One draft translation: its clauses as they come (`items`), and how it ended."""

    def __init__(self, utterance: Utterance) -> None:
        super().__init__()
        self.utterance = utterance
        self.first_token_at: float | None = None  # clock time of the LLM's first token
        self.on_token: Callable[[], None] | None = None  # once taken: the final's own first-token mark
        self.prepared: PreparedClause | None = None  # its first clause, synthesized ahead

    def token(self, at: float) -> None:
        if self.first_token_at is None:
            self.first_token_at = at
            if self.on_token is not None:
                self.on_token()

    def cancel(self) -> None:
        """Stop translating, and synthesizing ahead."""
        super().cancel()
        if self.prepared is not None:
            self.prepared.cancel()


class Drafts:
    """The drafts of one target language's brain, one per speaker at most."""

    def __init__(
        self,
        translator: Translator,
        contexts: ContextBook,
        clock: Clock,
        stale_after_s: float,
        prepare: Callable[[Utterance, str], PreparedClause] | None = None,
    ) -> None:
        self._prepare = prepare  # synthesizes a draft's first clause ahead (None: not)
        self._translator = translator
        self._contexts = contexts
        self._clock = clock
        self._stale_after_s = stale_after_s
        self._drafts: dict[str, Draft] = {}  # by speaker

    def start(self, utterance: Utterance, *, concise: bool = False) -> None:
        """Translate `utterance` (an eager end of turn's transcript) ahead of its final."""
        self._end(utterance.speaker, "discarded")  # the speaker's earlier draft was not taken
        draft = self._drafts[utterance.speaker] = Draft(utterance)
        draft.task = asyncio.create_task(self._translate(draft, concise), name=f"draft-{utterance.id}")

    def withdraw(self, speaker: str) -> None:
        """The speaker's turn went on: their draft will not be the final's translation."""
        self._end(speaker, "discarded")

    def take(self, utterance: Utterance) -> Draft | None:
        """The draft of this final, if it translated the same text (and has not failed before any clause)."""
        draft = self._drafts.get(utterance.speaker)
        if draft is None:
            return None
        if draft.utterance.text != utterance.text or (draft.error is not None and not draft.items):
            self._end(utterance.speaker, "changed")
            return None
        del self._drafts[utterance.speaker]
        metrics.DRAFTS.labels(outcome="used").inc()
        return draft

    async def aclose(self) -> None:
        drafts = list(self._drafts.values())
        self._drafts.clear()
        for draft in drafts:
            draft.cancel()
        made_by = [draft.task for draft in drafts] + [d.prepared.task for d in drafts if d.prepared]
        await asyncio.gather(*(t for t in made_by if t is not None), return_exceptions=True)

    def _end(self, speaker: str, outcome: str) -> None:
        draft = self._drafts.pop(speaker, None)
        if draft is None:
            return
        metrics.DRAFTS.labels(outcome=outcome).inc()
        draft.cancel()

    async def _translate(self, draft: Draft, concise: bool) -> None:
        utterance = draft.utterance
        context = self._contexts.for_speaker(utterance.speaker, utterance.language)
        clauses = self._translator.clauses(
            context,
            utterance.text,
            concise=concise,
            on_token=lambda: draft.token(self._clock()),
            utterance_id=utterance.id,
            give_up_at=utterance.speech_end_at + self._stale_after_s,
        )
        try:
            async with contextlib.aclosing(clauses):
                async for clause in clauses:
                    draft.add(clause)
                    if draft.prepared is None and self._prepare is not None:
                        draft.prepared = self._prepare(utterance, clause)
        except asyncio.CancelledError:
            draft.end(asyncio.CancelledError())
            raise
        except Exception as e:  # the final's translation fails the same way, or is translated anew
            draft.end(e)
            logger.debug("draft translation failed", extra={"utterance_id": utterance.id})
        else:
            draft.end()
