"""`python -m bench cost`: what a meeting costs, today's behaviour (every target language spoken all the
time) against listener-driven synthesis, from the worker's own usage counters."""
