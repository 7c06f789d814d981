"""Prometheus metrics of the interpreter, served by the worker on PROMETHEUS_PORT (`/metrics`).

Jobs run in their own processes, so the worker runs prometheus_client in multiprocess mode (a
directory shared by the job processes); gauges are summed over the live processes. Names follow
Prometheus conventions: `_seconds` for durations, `_total` for counters.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from agent.telemetry.latency import STAGES, UtteranceRecord

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 5.0, 10.0)

STAGE_SECONDS = Histogram(
    "interpreter_stage_latency_seconds",
    "Time spent per pipeline stage; stage=end_to_end is speech end to first translated frame",
    ["stage"],
    buckets=_BUCKETS,
)
UTTERANCES = Counter("interpreter_utterances_total", "Utterances interpreted, by outcome", ["outcome"])
ACTIVE_SESSIONS = Gauge("interpreter_active_sessions", "Rooms being interpreted", multiprocess_mode="livesum")
ACTIVE_SPEAKERS = Gauge(
    "interpreter_active_speakers", "Speakers being listened to", multiprocess_mode="livesum"
)
ACTIVE_LANGUAGES = Gauge(
    "interpreter_active_languages", "Interpretation tracks published", multiprocess_mode="livesum"
)
QUEUED_UTTERANCES = Gauge(
    "interpreter_queued_utterances",
    "Utterances waiting for translation, summed over channels",
    multiprocess_mode="livesum",
)
LLM_FALLBACKS = Counter(
    "interpreter_llm_fallbacks_total", "Times an LLM became unavailable and the next one took over", ["llm"]
)
PROVIDER_ERRORS = Counter(
    "interpreter_provider_errors_total", "Errors reported by provider plugins", ["kind", "recoverable"]
)
DRAFTS = Counter(
    "interpreter_drafts_total",
    "Draft translations of an eager end of turn (Deepgram Flux), by outcome: used (the final said the "
    "same), changed (it did not: translated again) or discarded (the turn went on); the last two cost an "
    "LLM request each",
    ["outcome"],
)
STT_RECONNECTS = Counter("interpreter_stt_reconnects_total", "Speech-to-text streams reopened after failing")
DROPOUTS_SPLICED = Counter(
    "interpreter_dropouts_spliced_total",
    "Dropouts (a speaker's packets lost for up to 240 ms, mid-speech) kept from speech-to-text, so they "
    "did not end an utterance",
)
NOT_INTERPRETED = Counter(
    "interpreter_not_interpreted_total",
    "Sentences heard but not interpreted, by reason: echo (a speaker's microphone picked up an "
    "interpretation the room was playing) or crosstalk (another speaker's microphone heard it first, "
    "louder: interpreted once, as theirs)",
    ["reason"],
)
KEEPER_DISPATCHES = Counter(
    "interpreter_keeper_dispatches_total",
    "Rooms the keeper dispatched an interpreter to again, by reason: stale (an interpreter of ours is in the "
    "room but its heartbeat stopped: its worker was lost) or absent (none there: a dispatch the server "
    "dropped, a job that ended)",
    ["reason"],
)


def observe_record(record: UtteranceRecord) -> None:
    """A completed utterance: its stage latencies into the histograms, its outcome into the counter."""
    UTTERANCES.labels(outcome=record.outcome).inc()
    if record.outcome != "spoken":
        return
    for name, start, end in STAGES:
        value = record.span(start, end)
        if value is not None and value >= 0:
            STAGE_SECONDS.labels(stage=name).observe(value)


GUARD_REJECTIONS = Counter(
    "interpreter_guard_rejections_total", "LLM replies stopped by the output guard, by reason", ["reason"]
)
LLM_RESUMES = Counter(
    "interpreter_llm_resumes_total", "Translations continued after an LLM stream broke off mid-reply"
)
TTS_CLAUSE_RETRIES = Counter(
    "interpreter_tts_clause_retries_total", "Clauses synthesized again after their TTS stream broke off"
)
CAPTIONS_NOT_SENT = Counter(
    "interpreter_captions_not_sent_total",
    "Captions not sent behind a slow data channel: superseded (a newer version of the segment took the "
    "waiting one's place) or backlog (dropped past the publisher's bound)",
    ["reason"],
)
LLM_TRUNCATIONS = Counter(
    "interpreter_llm_truncations_total",
    "LLM replies cut by the token limit (each is continued, up to a bound)",
)
LLM_REFUSALS = Counter(
    "interpreter_llm_refusals_total",
    "Requests an LLM refused with a status not worth retrying (400, 401, 404, 422...), by LLM and status",
    ["llm", "status"],
)
VOICE_CLONES = Counter(
    "interpreter_voice_clones_total",
    "Own-voice clones of consenting speakers: made, failed (refused, slow, unreachable), deleted",
    ["outcome"],
)
FIRST_WORD_TO_OWN_VOICE = Histogram(
    "interpreter_first_word_to_own_voice_seconds",
    "From a consenting speaker's first word to their clone being ready (their own voice speaks from then)",
    buckets=(1.0, 2.0, 3.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0),
)
USAGE = Counter(
    "interpreter_usage",
    "What the providers were asked for, as they bill it, by provider, model, item (audio_seconds sent to "
    "speech-to-text; input_tokens and output_tokens of the LLMs' own usage; characters and "
    "clone_characters synthesized; clones and clone_deletes) and language",
    ["provider", "model", "item", "language"],
)
COST = Counter(
    "interpreter_cost_usd",
    "What that usage costs by the price table (agent/settings/prices.toml, or PRICES_FILE), by provider",
    ["provider"],
)
ROOM_COST = Histogram(
    "interpreter_room_cost_usd",
    "What one room cost, by the price table, observed when its job ends",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0),
)
