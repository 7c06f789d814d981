"""The providers, built from settings and injected into the loops: Deepgram STT, Cerebras then Groq behind
one fallback LLM, Cartesia TTS; the framework's retry options; how their replies and errors are read.

May import `agent.settings`, `agent.telemetry` and `agent.language`; never the loops, the room or
`agent.run`."""
