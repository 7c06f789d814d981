"""`python -m agent start|dev|connect|download-files` runs the worker; `interpret` runs the file mode."""

from __future__ import annotations

import logging
import sys

RUNS_JOBS = {"start", "dev", "connect", "console"}


def main() -> int:
    from .worker import install_uvloop

    install_uvloop()

    if len(sys.argv) > 1 and sys.argv[1] == "interpret":
        from .filemode import main as interpret

        logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
        return interpret(sys.argv[2:])

    from livekit.agents import cli

    from .config import ConfigError, load_settings, read_environment
    from .worker import build_server

    env = read_environment()
    if len(sys.argv) > 1 and sys.argv[1] in RUNS_JOBS:
        try:
            load_settings(env)  # fail at start-up, naming every missing or malformed variable
        except ConfigError as e:
            print(e, file=sys.stderr)
            return 2
    cli.run_app(build_server(agent_name=env.get("AGENT_NAME") or "interpreter"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
