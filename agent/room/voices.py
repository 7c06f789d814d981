"""A distinct voice per speaker: which Cartesia voice speaks each speaker's words on each target language.

The curated set. sonic-3 speaks every supported language in any voice, so a few voices reused across
languages are enough; a language with voices recorded by native speakers lists those first. Where the ids
come from (no network here to check them against Cartesia's voice library, so they are as published):
- `f786b574-…` "Katie - Friendly Fixer": the livekit cartesia plugin's default (`TTSDefaultVoiceId`,
  livekit-plugins-cartesia 1.8.9 `models.py`), so also the voice when nothing else is set.
- `a0e99841-…` "Barbershop Man": the voice of Cartesia's own examples and of
  docs/room-contract.md's example.
- `79f8b5fb-…` "Nonfiction Man", `15a9cd88-…` "Reading Lady", and the French, German and Japanese voices:
  SignalWire's page of Cartesia voices (developer.signalwire.com/voice/tts/cartesia), copied from
  Cartesia's library; not confirmed against Cartesia itself.
A voice id that stops existing fails that speaker's TTS (captions still go out); override it per room.

The rule (`VoiceBook`): on each target language, the first speaker to join (of those who do not speak
it) speaks with the language's default voice (the room metadata's `voices`, else `CARTESIA_VOICE`, else the
plugin's default), and each next speaker, in join order, with the next curated voice not already in use
there. When the set is used up, the voice held by the fewest present speakers is reused (the earliest in the
set on a tie). A speaker keeps their voice for the whole meeting (mute, unmute, leaving and rejoining); a
room-metadata `speaker_voices` override wins over all of this, as given (even if another speaker has it).
File mode (one speaker, no book): the TTS's own voice, as before.

Own voice (`set_clone`, from `agent/room/cloning.py`): a consenting speaker's clone, once made, speaks them on
every target language, over all of the above; cleared (consent withdrawn, left), their voice here again.
"""

from __future__ import annotations

from agent.language.codes import base_language
from agent.settings.room_settings import RoomSettings

PLUGIN_DEFAULT_VOICE = "f786b574-daa5-4673-aa0c-cbe3e8534c02"  # Katie - Friendly Fixer
MULTILINGUAL_VOICES: tuple[str, ...] = (
    PLUGIN_DEFAULT_VOICE,
    "a0e99841-438c-4a64-b679-ae501e7d6091",  # Barbershop Man
    "79f8b5fb-2cc8-479a-80df-29f7a7cf1a3e",  # Nonfiction Man
    "15a9cd88-84b0-4a8b-95f2-5d583b54c72e",  # Reading Lady
)
NATIVE_VOICES: dict[str, tuple[str, ...]] = {  # by base language
    "fr": (
        "a249eaff-1e96-4d2c-b23b-12efa4f66f41",  # French Conversational Lady
        "8832a0b5-47b2-4751-bb22-6a8e2149303d",  # French Narrator Lady
    ),
    "de": (
        "3f4ade23-6eb4-4279-ab05-6a144947c4d5",  # German Conversational Woman
        "119e03e4-0705-43c9-b3ac-a658ce2b6639",  # German Reporter Woman
    ),
    "ja": (
        "2b568345-1d48-4047-b25f-7baccf842eb0",  # Japanese Woman Conversational
        "e8a863c6-22c7-4671-86ca-91cacffc038d",  # Japanese Male Conversational
    ),
}


def curated_voices(language: str) -> tuple[str, ...]:
    """The curated voices for `language`, native ones first, without repeats."""
    return tuple(dict.fromkeys(NATIVE_VOICES.get(base_language(language), ()) + MULTILINGUAL_VOICES))


_DEFAULT = -1  # the slot of the language's default voice


class VoiceBook:
    """Which voice speaks whom, per target language, for one meeting. `worker_voice`: CARTESIA_VOICE."""

    def __init__(self, worker_voice: str | None = None) -> None:
        self._worker_voice = worker_voice
        self.settings = RoomSettings()
        self._order: list[str] = []  # speakers, in the order they first joined
        self._present: set[str] = set()
        self._speaks: dict[str, str] = {}  # speaker → the language they speak now
        self._slots: dict[str, dict[str, int]] = {}  # language → speaker → slot (index in the set)
        self._clones: dict[str, str] = {}  # speaker → their own (cloned) voice, while they consent

    def set_clone(self, identity: str, voice_id: str | None) -> None:
        """`identity`'s own voice is ready (`voice_id`), or no longer to be used (None)."""
        if voice_id is None:
            self._clones.pop(identity, None)
        else:
            self._clones[identity] = voice_id

    def is_clone(self, voice_id: str) -> bool:
        """Whether `voice_id` is a speaker's own (cloned) voice."""
        return voice_id in self._clones.values()

    def cloned(self) -> list[str]:
        """The speakers heard in their own voice now, sorted."""
        return sorted(self._clones)

    def join(self, identity: str, language: str | None = None) -> None:
        """`identity` speaks (in `language`: never interpreted into it, so no voice of theirs there)."""
        if identity not in self._order:
            self._order.append(identity)
        self._present.add(identity)
        if language is not None:
            self._speaks[identity] = base_language(language)

    def leave(self, identity: str) -> None:
        """They keep their voice should they come back; meanwhile theirs may be given to someone new."""
        self._present.discard(identity)

    def default_voice(self, language: str) -> str:
        return self.settings.voice_for(language) or self._worker_voice or PLUGIN_DEFAULT_VOICE

    def voice_for(self, identity: str, language: str) -> str:
        """The voice `identity` speaks with on `language` (assigned on first use, in join order)."""
        if clone := self._clones.get(identity):
            return clone
        if override := self.settings.speaker_voice_for(identity, language):
            return override
        self.join(identity)  # an utterance of someone not seen joining: after everyone who was
        slots = self._slots.setdefault(language, {})
        for speaker in self._order[: self._order.index(identity) + 1]:
            speaks_it = self._speaks.get(speaker) == base_language(language) and speaker != identity
            if speaker not in slots and not speaks_it:
                slots[speaker] = self._free_slot(language, slots)
        return self._voice(language, slots[identity])

    def _voice(self, language: str, slot: int) -> str:
        return self.default_voice(language) if slot == _DEFAULT else curated_voices(language)[slot]

    def _free_slot(self, language: str, slots: dict[str, int]) -> int:
        default = self.default_voice(language)
        candidates = [_DEFAULT] + [i for i, voice in enumerate(curated_voices(language)) if voice != default]
        held = [slot for speaker, slot in slots.items() if speaker in self._present]
        return min(candidates, key=lambda slot: (held.count(slot), candidates.index(slot)))
