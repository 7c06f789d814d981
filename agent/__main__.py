"""`python -m agent start|dev|connect|download-files` runs the worker; `interpret` runs the file mode; `web`
serves the page and its join tokens; `local` runs a local LiveKit server, the worker and the page together."""

from __future__ import annotations

import os
import sys

RUNS_JOBS = {"start", "dev", "connect", "console"}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "web":
        from agent.run.web import main as web

        return web(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "local":
        from agent.run.local import main as local

        return local(sys.argv[2:])
    if len(sys.argv) > 1 and sys.argv[1] == "interpret":
        # the file mode serves no metrics: it keeps them in this process, whatever the worker's
        # PROMETHEUS_MULTIPROC_DIR says (a folder that may not exist here, or one a running worker
        # sums up: prometheus_client reads it when the metrics are defined, on import)
        for name in ("PROMETHEUS_MULTIPROC_DIR", "prometheus_multiproc_dir"):
            os.environ.pop(name, None)
        from agent.run.filemode import main as interpret
        from agent.run.worker import install_uvloop

        install_uvloop()
        return interpret(sys.argv[2:])

    from agent.settings.config import ConfigError, load_server_settings, load_settings, read_environment

    env = read_environment()
    try:
        server_settings = load_server_settings(env)
        if len(sys.argv) > 1 and sys.argv[1] in RUNS_JOBS:
            load_settings(env)  # fail at start-up, naming every missing or malformed variable
    except ConfigError as e:
        print(e, file=sys.stderr)
        return 2

    # job processes report metrics through files in this directory; it must exist before the
    # metrics are defined (on import), in this process and in every job process it starts
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = server_settings.prometheus_dir
    os.makedirs(server_settings.prometheus_dir, exist_ok=True)
    # LOG_LEVEL drives the framework's log set-up (its root logger, hence every `agent.*` logger, in
    # this process and in every job process it starts, which copy its levels); `--log-level` still wins
    if server_settings.framework_log_level:
        os.environ["LIVEKIT_LOG_LEVEL"] = server_settings.framework_log_level

    from livekit.agents import cli

    from agent.run.worker import build_server, install_uvloop

    install_uvloop()
    server = build_server(server_settings)
    try:
        cli.run_app(server)  # the framework's CLI ends with SystemExit, 0 even when the worker gave up
    except SystemExit as done:
        if done.code not in (None, 0):
            raise
    # LiveKit rejected the credentials or could not be reached, or HEALTH_PORT was taken: a failure, for
    # Fly and any supervisor
    return 1 if server.failed else 0


if __name__ == "__main__":
    sys.exit(main())
