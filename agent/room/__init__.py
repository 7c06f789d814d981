"""One LiveKit room interpreted: the session (speakers, languages, channels, state), the room's audio in and
captions and attributes out, each speaker's voice and own-voice clone, detected languages.

May import `agent.loops` and every package below it; never `agent.run`."""
