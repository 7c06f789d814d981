"""What a speaker with no language set (`auto`) hears: the language they speak most, as detected.

Each of their utterances is routed by its own detected language at once (the router never interprets
speech into the language it was spoken in). What they *hear* (their language among the room's target
languages, as a `language` attribute would make it) must not flap on one code-switched sentence: it is the
language of most of their last `window` detected utterances; it changes only when another language has
more of them than the one they hear now (with the default 5: after three utterances in a row in the new
language). Their first detection sets it.
"""

from __future__ import annotations

from collections import Counter, deque

RECENT_UTTERANCES = 5


class HeardLanguages:
    def __init__(self, window: int = RECENT_UTTERANCES) -> None:
        if window < 1:
            raise ValueError("window must be at least 1")
        self._window = window
        self._recent: dict[str, deque[str]] = {}  # identity -> their last detected languages, oldest first
        self._heard: dict[str, str] = {}

    def note(self, identity: str, language: str) -> bool:
        """`identity` said an utterance detected as `language`; True when what they hear changed."""
        recent = self._recent.setdefault(identity, deque(maxlen=self._window))
        recent.append(language)
        counts = Counter(recent)
        current = self._heard.get(identity)
        most = max(counts.values())
        if current is not None and counts[current] == most:
            return False
        # the language of most of their recent utterances (of those tied, the most recently spoken)
        self._heard[identity] = next(code for code in reversed(recent) if counts[code] == most)
        return self._heard[identity] != current

    def heard(self, identity: str) -> str | None:
        """The language `identity` hears, once anything of theirs was detected."""
        return self._heard.get(identity)
