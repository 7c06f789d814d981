"""Keeping what people say, and who they are, out of the logs.

Our own loggers never put transcript or translation text in a message (at most in structured `extra`
fields). The framework's TTS retry warning does: "failed to synthesize speech: no audio frames were
pushed for text: <the translation>". This filter cuts that text out of framework log records. And
the provider SDKs log whole requests (the transcript included) at DEBUG: their loggers stay at INFO.

Participant identities are personal data (often a name or an e-mail address). Our loggers name a
speaker in structured fields only (`speaker`, `participant`, and `utterance_id`, which starts with the
speaker's identity); a filter on every `agent.*` logger replaces the identity there with a pseudonym:
the first 8 hex digits of SHA-256 over a random per-process salt and the identity. Salted per process,
on purpose: a job (one room) runs in one process, so one speaker keeps one pseudonym throughout a
room's logs, while the same person in another room (or another run of the file mode) gets another, and
an identity one can guess ("alice", an e-mail address) cannot be confirmed by hashing it.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets

_PUSHED_TEXT = re.compile(r"(pushed for text:).*?(?=, retrying in |$)", re.S)
_installed = False
_SALT = secrets.token_bytes(16)

# the loggers of every module of the agent (tests/test_logs.py checks that none is missing)
AGENT_LOGGERS = (
    "agent.brain",
    "agent.clone_sweep",
    "agent.cloning",
    "agent.ears",
    "agent.keeper",
    "agent.latency",
    "agent.mouth",
    "agent.providers",
    "agent.room",
    "agent.session",
    "agent.translate",
    "agent.web",
    "agent.worker",
)
_IDENTITY_FIELDS = ("speaker", "participant", "client")  # client: the page's client address
_RESTARTED_PREFIX = re.compile(r"^(?P<identity>.+)\.(?P<restart>\d+)$")


def pseudonym(identity: str) -> str:
    """A participant identity as logged: 8 hex digits, stable within this process."""
    return hashlib.sha256(_SALT + identity.encode()).hexdigest()[:8]


def _pseudonymous_segment_id(segment_id: str) -> str:
    """`<identity>-<n>` or `<identity>.<restart>-<n>` (agent.room.session names segments so) with the
    identity replaced. (An identity that itself ends in `.<digits>` is cut there: still no identity.)"""
    prefix, dash, seq = segment_id.rpartition("-")
    if not dash:
        return pseudonym(segment_id)
    restarted = _RESTARTED_PREFIX.match(prefix)
    if restarted:
        return f"{pseudonym(restarted['identity'])}.{restarted['restart']}-{seq}"
    return f"{pseudonym(prefix)}-{seq}"


class PseudonymizeIdentities(logging.Filter):
    """Replaces participant identities in a record's structured fields with their pseudonyms."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        if fields.get("identities_hidden"):
            return True  # a job process's record, handled again by the worker's loggers
        for name in _IDENTITY_FIELDS:
            value = fields.get(name)
            if isinstance(value, str):
                fields[name] = pseudonym(value)
        utterance_id = fields.get("utterance_id")
        if isinstance(utterance_id, str):
            fields["utterance_id"] = _pseudonymous_segment_id(utterance_id)
        fields["identities_hidden"] = True
        return True


def _hide_identities() -> None:
    identity_filter = PseudonymizeIdentities()
    for name in AGENT_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, PseudonymizeIdentities) for f in logger.filters):
            logger.addFilter(identity_filter)


# on import: every agent module that logs a speaker imports this one (through agent.providers.build), and
# the filter must be in place before its first record, in every process
_hide_identities()


class RedactSpokenText(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "pushed for text:" in message:
            record.msg = _PUSHED_TEXT.sub(r"\1 <redacted>", message)
            record.args = ()
        return True


def redact_provider_logs() -> None:
    """Install the filter on the framework's logger (once per process)."""
    global _installed
    if not _installed:
        logging.getLogger("livekit.agents").addFilter(RedactSpokenText())
        # "Request options: {... messages ...}" at DEBUG; above INFO when LOG_LEVEL is (the root's level)
        level = max(logging.INFO, logging.getLogger().getEffectiveLevel())
        for sdk in ("cerebras.cloud.sdk", "openai"):
            logging.getLogger(sdk).setLevel(level)
        _installed = True
