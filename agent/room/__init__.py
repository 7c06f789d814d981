"""One LiveKit room interpreted: the session (room events → control steps, in order) and its parts (speakers'
ears, a channel and track per language, which languages, the agent's state and faults), the room's audio in
and captions and attributes out, each speaker's voice and own-voice clone, detected languages, and the
interpreter's presence (its heartbeat, who is live, who leaves).

May import `agent.loops` and every package below it; never `agent.run`."""
