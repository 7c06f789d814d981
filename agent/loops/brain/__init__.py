"""The brain: an utterance → the LLM's translation, clause by clause (`translate`, checked by `guard`, asked
with `prompt`) → Cartesia speech per clause (`synthesis`), handed to the mouth in order. `loop` is the Brain;
`drafts` translates an eager end of turn ahead (what it and `synthesis` make ahead waits in `unfolding`).

May import the loops' shared modules and the packages below `agent.loops`; never the ears or the mouth."""
