"""Languages and text: language codes and their names, the languages the interpreter takes; text hygiene
and clause cutting.

Imports nothing of `agent`; every other package may import it."""
