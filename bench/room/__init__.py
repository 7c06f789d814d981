"""`python -m bench room` (and `capacity`): the benchmark through a real LiveKit server, the worker run as
production runs it, its records observed by `hook/sitecustomize.py`; the rooms, what the listener heard, and
the capacity sweep (`rooms`)."""
