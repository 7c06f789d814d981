"""What every benchmark workload shares: the latency model (`model`) and the fake providers on it
(`modelled_providers`), the synthetic speakers (`speech`), one interpretation run in this process
(`session`), and the machine's load during a run (`machine`). Imports only `agent` and `tests`: never a
workload."""
