"""`python -m bench hall`: the interpreter in a hall (echo, cross-talk, noise, loss), measured (issue 22)."""
