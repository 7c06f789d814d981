"""The mouth: the brain's speech → the language's audio track, in order, with fades (`loop`); no dead air
between clauses (`trim`).

May import the loops' shared modules and the packages below `agent.loops`; never the ears or the brain."""
