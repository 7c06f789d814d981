# syntax=docker/dockerfile:1
# Multi-stage: build the locked environment with uv, then copy it into a slim runtime as a non-root user.
FROM python:3.11-slim-bookworm AS build
RUN pip install --no-cache-dir uv
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
WORKDIR /app
COPY pyproject.toml uv.lock ./
RUN uv sync --locked --no-dev --no-install-project
# the code, with the page's built bundle (agent/run/web_static/, committed: no Node in the image)
COPY agent ./agent

FROM python:3.11-slim-bookworm
RUN useradd --create-home --uid 10001 interpreter
WORKDIR /app
COPY --from=build --chown=interpreter /app /app
ENV PATH="/app/.venv/bin:$PATH" PYTHONUNBUFFERED=1
USER interpreter
# fetch whatever model files the plugins need at build time, not at start (through livekit.agents itself:
# `python -m agent download-files` still works, but the framework deprecated it as of 1.5.10)
RUN python -m livekit.agents download-files
# the worker's health endpoint; the page (`python -m agent web`, fly.toml's `web` process)
EXPOSE 8081 8080
CMD ["python", "-m", "agent", "start"]
