"""What the interpreter measures and tells its operators: latency marks and percentiles, Prometheus
metrics, logs without secrets, transcripts or identities, and bugs logged with their traceback.

Imports nothing of `agent`; every other package may import it."""
