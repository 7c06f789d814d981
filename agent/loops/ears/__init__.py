"""The ears: one speaker's audio → streaming STT → utterances on the brain's queue, and source captions.
`loop` (Ears) ties the parts: `stt_link` (the Deepgram stream: reconnect, refusals), `replay` (audio not yet
finalized), `segment_cutter` and `pauses` (where a segment ends), `transcripts` (utterances and captions).

May import the loops' shared modules and the packages below `agent.loops`; never the brain or the mouth."""
