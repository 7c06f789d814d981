"""The loops of one job and what they pass: ears (speaker audio → STT → utterances), brain (utterance →
translation → speech), mouth (speech → the language's audio track); the messages and queues between them;
`pipeline` joins them, one channel per language.

May import `agent.providers`, `agent.settings`, `agent.telemetry` and `agent.language`; never the room
or `agent.run`."""
