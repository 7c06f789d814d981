"""`python -m bench fleet`: rooms keeping their interpreter across workers, through a real LiveKit server —
a burst of rooms, a worker killed, a deploy mid-meeting (issue 20)."""
