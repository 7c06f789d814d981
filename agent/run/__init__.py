"""The ways to run and operate the interpreter: the LiveKit worker, its health endpoint and its keeper (rooms
dispatched again), the page and its join tokens (with the built page in `web_static/`, the limits per client
in `web_limits`), everything on one machine (`local`), a WAV file.

The top: may import every package; only `agent/__main__.py` imports it."""
