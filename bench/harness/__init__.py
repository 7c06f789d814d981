"""What every benchmark workload shares: the latency model (`model`), the fake providers on it
(`modelled_providers`) in a process of their own (`provider_process`), the synthetic speakers (`speech`), one
interpretation run in this process (`session`) and its per-utterance figures over the modelled floor
(`figures`), percentiles and summaries (`stats`), the command line and output folder (`cli`), result files,
tables and pictures (`output`), and the machine's load (`machine`). Imports only `agent`, `tests` and
itself: never a workload."""
