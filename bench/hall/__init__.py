"""`python -m bench hall`: the interpreter in a hall — echo, cross-talk, noise, loss (issue 22)."""
