"""The benchmarks: the real loops and plugins against local fake providers, one command `python -m bench
<workload>` (`__main__`, `--help` lists the workloads).

- `harness/`: what every workload shares: the latency model and the fake providers on it, the synthetic
  speech, one session run in this process, the figures over the modelled floor, percentiles, the command
  line, result files and pictures, the machine's load;
- one module or package a workload: `latency` (dialogue, monologue) and `scale`, `lag/`, `room/` (with its
  capacity sweep), `soak/`, `overhead`; committed results in `results/`.
"""
