"""The loops of one job, each a package: `ears` (speaker audio → STT → utterances), `brain` (utterance →
translation → speech), `mouth` (speech → the language's audio track); beside them what they pass (`models`,
`queues`, `captions`, `faults`, `pace`), and `pipeline`, which joins them, one channel per language.

May import `agent.providers`, `agent.settings`, `agent.telemetry` and `agent.language`; never the room
or `agent.run`. The ears, the brain and the mouth never import one another."""
