"""Keeping what people say out of log messages.

Our own loggers never put transcript or translation text in a message (at most in structured `extra`
fields). The framework's TTS retry warning does: "failed to synthesize speech: no audio frames were
pushed for text: <the translation>". This filter cuts that text out of framework log records. And
the provider SDKs log whole requests (the transcript included) at DEBUG: their loggers stay at INFO.
"""

from __future__ import annotations

import logging
import re

_PUSHED_TEXT = re.compile(r"(pushed for text:).*?(?=, retrying in |$)", re.S)
_installed = False


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
        for sdk in ("cerebras.cloud.sdk", "openai"):  # "Request options: {... messages ...}" at DEBUG
            logging.getLogger(sdk).setLevel(logging.INFO)
        _installed = True
