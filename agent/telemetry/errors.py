"""Logging an unexpected error (a bug, not a provider outage) with its traceback but without its message.

An exception's message may quote what was said (a transcript in a `ValueError`, say), and log messages
never carry it. `log_unexpected` logs the traceback of the error and of every error chained to it, each
under its own type, with the messages withheld.
"""

from __future__ import annotations

import logging
from typing import Any


class WithheldMessage(Exception):
    """Stands in for an exception in a log record: its type and traceback, not its message."""


class WithheldMessages(ExceptionGroup[Exception]):
    """Stands in for an exception group: its type, its traceback and its members'."""


def withhold_messages(
    error: BaseException, _seen: set[int] | None = None
) -> WithheldMessage | WithheldMessages:
    """A stand-in for `error` (and the errors chained to it) that prints the same tracebacks."""
    seen = _seen if _seen is not None else set()
    seen.add(id(error))
    kind = type(error)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    message = f"{name} (message withheld)"
    stand_in: WithheldMessage | WithheldMessages
    if isinstance(error, BaseExceptionGroup):
        stand_in = WithheldMessages(message, [withhold_messages(e, seen) for e in error.exceptions])
    else:
        stand_in = WithheldMessage(message)
    stand_in.__traceback__ = error.__traceback__
    stand_in.__suppress_context__ = error.__suppress_context__
    if error.__cause__ is not None and id(error.__cause__) not in seen:
        stand_in.__cause__ = withhold_messages(error.__cause__, seen)
    if error.__context__ is not None and id(error.__context__) not in seen:
        stand_in.__context__ = withhold_messages(error.__context__, seen)
    return stand_in


def log_unexpected(logger: logging.Logger, message: str, error: BaseException, **extra: Any) -> None:
    """Log `message` as an error with `error`'s traceback (messages withheld) and its type in `error`."""
    stand_in = withhold_messages(error)
    logger.error(
        message,
        exc_info=(type(stand_in), stand_in, stand_in.__traceback__),
        extra={**extra, "error": type(error).__name__},
    )
