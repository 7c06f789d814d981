"""The loops of one job and what they pass: ears (speaker audio → STT → utterances, with `stt_link`,
`replay`, `segment_cutter`, `transcripts`), brain (utterance → translation → speech, with `translate`,
`synthesis`), mouth (speech → the language's audio track); the messages, queues and captions between
them; `pipeline` joins them, one channel per language.

May import `agent.providers`, `agent.settings`, `agent.telemetry` and `agent.language`; never the room
or `agent.run`."""
