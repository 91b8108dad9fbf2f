# LivePulse worker image (also runs the other `livepulse` commands, e.g. simulate).
#   docker build -t livepulse:local .
#   docker run --rm -e LIVEPULSE_BROKER=kafka://broker:9092 -p 6066:6066 livepulse:local
FROM python:3.11.13-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 --user-group livepulse

# Only what the package is built from: pyproject (README.md is its long description), the
# pinned dependencies, the code and the wire contract.
WORKDIR /src
COPY pyproject.toml README.md requirements.lock ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install -r requirements.lock && pip install --no-deps . && cd / && rm -rf /src

USER livepulse
WORKDIR /home/livepulse
# A named volume mounted here starts owned by livepulse.
RUN mkdir -p /home/livepulse/state

ENV LIVEPULSE_WEB_HOST=0.0.0.0 \
    LIVEPULSE_WEB_PORT=6066 \
    LIVEPULSE_STATE_DIR=/home/livepulse/state
EXPOSE 6066

# /health: 200 while the worker process answers (its /ready says whether it serves; the
# compose stack checks that). Commands other than `worker` (simulate, replay) serve no HTTP:
# disable the check for them (docker-compose.yml does).
HEALTHCHECK --interval=10s --timeout=5s --start-period=90s --retries=6 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/health' % os.environ.get('LIVEPULSE_WEB_PORT', '6066'), timeout=4)"

CMD ["livepulse", "worker"]
