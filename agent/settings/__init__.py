"""What the interpreter is told: the worker's environment (validated at start-up, every missing variable
named; the page's in `web`) and each room's metadata (validated; bad fields reported, defaults used).

May import `agent.language` only."""
