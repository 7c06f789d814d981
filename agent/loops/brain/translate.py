"""Translating one utterance: LLM stream → clauses fit to speak, exactly once, whatever the LLM does.

- Retries across providers stay in `FallbackLLM` (Cerebras, then Groq, Cerebras again once it
  recovers). What it does not do is resume: after a reply breaks off mid-stream it raises rather
  than repeat what was already sent. Here the translation is then *continued* from the last
  clause already handed on (the LLM gets the spoken part and is asked for the rest; a repeated
  beginning is dropped), so nothing is said twice and nothing is lost.
- When every LLM fails before any token, the providers are down: the utterance waits and is tried
  again with backoff until one answers, and `on_fault` tells the room (captions keep flowing
  meanwhile: they never pass through here). This is the one place a request is retried after every
  LLM failed, and only for errors the framework calls retryable, and only until the utterance's
  `give_up_at` (its speech's end + `STALE_AFTER_S`: a translation that late would not be spoken
  anyway): then it fails, freeing its slot, with one line naming each provider and its error. A
  refusal (`APIStatusError` with `retryable` false: 400, 401, 403, 404, 422..., from `FallbackLLM` as
  `LLMRefused` when every LLM refused) would be refused again, so it fails the utterance at once, logged
  with provider and status. Either way `TranslationAbandoned` tells the caller it was logged here.
- A reply cut by the LLM's token limit (`finish_reason: "length"`, or a usage of all the completion
  tokens asked for) is continued like a reply that broke off, counted and logged.
- Every clause passes the output guard before it is handed on; a reply that is not a translation
  is retried once with a stricter prompt, then given up (the speaker's caption stays).
- A long transcript is translated in pieces of bounded size, in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass

from livekit.agents import APIError, APIStatusError, llm

from agent.language.text import ClauseSplitter, ReasoningFilter, clean_clause, is_speakable, split_source
from agent.loops.brain.guard import OutputGuard, is_opener
from agent.loops.brain.prompt import TranslationContext
from agent.loops.faults import FaultFlag
from agent.providers.llm_replies import describe_error, reply_was_cut
from agent.telemetry import metrics

logger = logging.getLogger("agent.translate")


@dataclass(frozen=True, slots=True)
class TranslateOptions:
    max_resumes: int = 3  # continuations of one piece after broken streams
    outage_initial_s: float = 0.5  # backoff while every LLM fails
    outage_max_s: float = 5.0
    max_piece_chars: int = 600


class TranslationRejected(Exception):
    """The LLM's replies to an utterance were not translations (see `guard.py`)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TranslationAbandoned(Exception):
    """No translation for this utterance: every LLM refused it, or none answered in time (logged)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason  # "refused" | "outage"


class _Attempt:
    """One LLM reply to one piece: its clauses as they stream, its guard, the clauses it repeats, the
    clauses it holds back; whether any content came, and whether the token limit cut it."""

    def __init__(self, source: str, given: list[str], *, first: bool) -> None:
        self.guard = OutputGuard(source)
        for clause in given:
            self.guard.check(clause)  # a continuation's limits count what was said before
        self._given = given
        self._repeated = list(given)  # a continuation that starts over: drop what matches these
        self._held: list[str] = []  # a question's clauses, until the reply shows it is one too
        self._first = first
        self._splitter, self._reasoning = ClauseSplitter(), ReasoningFilter()
        self.received = False  # some content came
        self.cut = False  # the reply was cut by the token limit

    def push(self, content: str) -> list[str]:
        """The clauses fit to hand on now, with the reply's next content."""
        return self.fit(self._splitter.push(self._reasoning.push(content)))

    def fit(self, raws: list[str]) -> list[str]:
        """The clauses fit to hand on now; raises `TranslationRejected` for one that is not a translation."""
        out: list[str] = []
        for raw in raws:
            if self._repeated and _norm(raw) == _norm(self._repeated[0]):
                self._repeated.pop(0)
                continue
            self._repeated.clear()
            first = self._first and not self._given and not self._held and not out
            clause = clean_clause(raw, first=first)
            if reason := self.guard.check(raw, clause):
                raise TranslationRejected(reason)
            if is_speakable(clause):
                out.append(clause)
        if self.guard.expects_question and not self.guard.saw_question:
            self._held.extend(out)  # a question's translation shows it is one before it is spoken
            return []
        if not self._given and all(is_opener(c) for c in [*self._held, *out]):
            self._held.extend(out)  # "Sure!" alone: wait for what follows it
            return []
        ready, self._held = [*self._held, *out], []
        return ready

    def finish(self) -> list[str]:
        """The reply ended: the rest of its clauses fit to hand on."""
        tail = self.fit(self._splitter.push(self._reasoning.flush()) + self._splitter.flush())
        if reason := self.guard.finish():
            raise TranslationRejected(reason)
        ready, self._held = [*tail, *self._held], []
        return ready


def _norm(text: str) -> str:
    return " ".join("".join(ch for ch in text.lower() if ch.isalnum() or ch.isspace()).split())


class Translator:
    def __init__(
        self,
        llm: llm.LLM,
        *,
        options: TranslateOptions | None = None,
        on_fault: Callable[[bool], None] | None = None,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self._llm = llm
        self._opts = options or TranslateOptions()
        self._fault = FaultFlag(on_fault)  # down while every LLM fails, up when one answers again
        self._clock = clock  # the clock `give_up_at` is on
        self.refused = 0  # utterances failed because the LLMs refused their request
        self.gave_up = 0  # utterances failed because no LLM answered in time
        self.truncated = 0  # replies cut by the token limit

    async def clauses(
        self,
        context: TranslationContext,
        text: str,
        *,
        concise: bool = False,
        on_token: Callable[[], None] | None = None,
        utterance_id: str = "",
        give_up_at: float | None = None,
    ) -> AsyncGenerator[str, None]:
        """The translation of `text`, clause by clause, each ready to speak and each given once.
        `give_up_at` (on the translator's clock): an outage lasting past it fails the utterance."""
        first = True
        for piece in split_source(text, self._opts.max_piece_chars):
            async for clause in self._piece(
                context, piece, concise, on_token, utterance_id, first, give_up_at
            ):
                first = False
                yield clause

    async def _piece(
        self,
        context: TranslationContext,
        source: str,
        concise: bool,
        on_token: Callable[[], None] | None,
        utterance_id: str,
        first: bool,
        give_up_at: float | None,
    ) -> AsyncIterator[str]:
        given: list[str] = []  # clauses already handed on
        strict = False
        resumes = outages = 0
        while True:
            attempt = _Attempt(source, given, first=first)
            chat_ctx = context.chat_context(
                source, concise=concise, strict=strict, resume_from=" ".join(given) or None
            )
            try:
                async with contextlib.aclosing(self._reply(attempt, chat_ctx, on_token)) as clauses:
                    async for clause in clauses:
                        given.append(clause)
                        yield clause
                if attempt.cut and self._continue_cut(resumes, utterance_id, len(given)):
                    resumes += 1
                    continue  # its unfinished last clause is not spoken: the continuation has it
                for clause in attempt.finish():
                    given.append(clause)
                    yield clause
                return
            except TranslationRejected as rejected:
                metrics.GUARD_REJECTIONS.labels(reason=rejected.reason).inc()
                logger.warning(
                    "the output guard stopped an LLM reply",
                    extra={"utterance_id": utterance_id, "reason": rejected.reason, "given": len(given)},
                )
                if given:
                    return  # what was already said stays; the rest of this reply is not spoken
                if strict:
                    raise
                strict = True
            except (APIError, TimeoutError) as e:
                if attempt.received:
                    resumes += 1
                    if resumes > self._opts.max_resumes:
                        raise
                    metrics.LLM_RESUMES.inc()
                    logger.warning(
                        "an LLM reply broke off; continuing it",
                        extra={"utterance_id": utterance_id, "error": type(e).__name__, "given": len(given)},
                    )
                    continue
                outages += 1
                await self._wait_out(e, utterance_id, outages, give_up_at)

    async def _reply(
        self, attempt: _Attempt, chat_ctx: llm.ChatContext, on_token: Callable[[], None] | None
    ) -> AsyncGenerator[str, None]:
        """The clauses of one LLM reply as it streams; `attempt` notes whether any content came (the first
        tells `on_token`, and that an LLM answers again) and whether the token limit cut the reply."""
        async with self._llm.chat(chat_ctx=chat_ctx) as stream:
            async for chunk in stream:
                attempt.cut = attempt.cut or reply_was_cut(chunk)
                content = chunk.delta.content if chunk.delta else None
                if not content:
                    continue
                if not attempt.received:
                    attempt.received = True
                    self._set_down(False)
                    if on_token is not None:
                        on_token()
                for clause in attempt.push(content):
                    yield clause

    async def _wait_out(
        self, error: APIError | TimeoutError, utterance_id: str, outages: int, give_up_at: float | None
    ) -> None:
        """No LLM answered (not one token came; the piece's `outages`-th time): a refusal fails the
        utterance at once; an outage is waited out with backoff, until `give_up_at`."""
        if isinstance(error, APIStatusError) and not error.retryable:
            self._refused(error, utterance_id)
            raise TranslationAbandoned("refused") from None
        self._set_down(True)
        now = self._clock()
        if give_up_at is not None and now >= give_up_at:
            self._give_up(error, utterance_id, outages)
            raise TranslationAbandoned("outage") from None
        delay = min(self._opts.outage_max_s, self._opts.outage_initial_s * 2 ** (outages - 1))
        if give_up_at is not None:
            delay = min(delay, give_up_at - now)  # a last try at the bound
        logger.info(  # the outage itself is reported once, by _set_down
            "no LLM answered; trying again",
            extra={"utterance_id": utterance_id, "error": type(error).__name__, "retry_in_s": delay},
        )
        await asyncio.sleep(delay)

    def _continue_cut(self, resumes: int, utterance_id: str, given: int) -> bool:
        """A reply was cut by the token limit: count it; True to continue it, False to end it there."""
        self.truncated += 1
        metrics.LLM_TRUNCATIONS.inc()
        if resumes >= self._opts.max_resumes:
            logger.warning(
                "an LLM reply was cut by its token limit again; the translation ends there",
                extra={"utterance_id": utterance_id, "given": given},
            )
            return False
        logger.warning(
            "an LLM reply was cut by its token limit; continuing it",
            extra={"utterance_id": utterance_id, "given": given},
        )
        return True

    def _give_up(self, error: APIError | TimeoutError, utterance_id: str, attempts: int) -> None:
        self.gave_up += 1
        failures = getattr(error, "failures", None) or [(self._llm.provider, describe_error(error))]
        logger.error(
            "no LLM answered in time (%s): this utterance is not translated",
            ", ".join(f"{provider} {what}" for provider, what in failures),
            extra={"utterance_id": utterance_id, "attempts": attempts, "error": type(error).__name__},
        )

    def _refused(self, error: APIStatusError, utterance_id: str) -> None:
        refusals: list[tuple[str, int]] = getattr(error, "refusals", None) or [
            (self._llm.provider, error.status_code)
        ]
        self.refused += 1
        self._fault.set(True)  # shown until an LLM answers again
        logger.error(
            "the LLM refused the request (%s): this utterance is not translated",
            ", ".join(f"{provider} {status}" for provider, status in refusals),
            extra={"utterance_id": utterance_id, "statuses": [status for _, status in refusals]},
        )

    def _set_down(self, down: bool) -> None:
        if not self._fault.set(down):
            return
        if down:
            logger.error("every LLM is failing: translations wait until one answers")
        else:
            logger.info("an LLM answers again")
