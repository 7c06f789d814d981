"""`python -m bench room` (and `capacity`): the benchmark through a real LiveKit server, the worker run as
production runs it, its records observed by `hook/sitecustomize.py`. The command and its workloads
(`workload`), one run of N rooms against a worker (`rooms`), its participants (`participants`), the CPU meter
(`meter`), where each translation starts in what the listener heard (`listener_audio`), the figures of a run
(`analysis`), the capacity sweep (`capacity`), the table and picture (`report`)."""
