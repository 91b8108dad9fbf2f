FROM python:3.11.7-slim-bookworm
RUN useradd --create-home --uid 10001 livepulse
WORKDIR /app
COPY pyproject.toml README.md ./
COPY streams ./streams
COPY schemas ./schemas
RUN pip install --no-cache-dir .
USER livepulse
ENV LIVEPULSE_WEB_HOST=0.0.0.0 \
    LIVEPULSE_STATE_DIR=/home/livepulse/state
EXPOSE 6066
CMD ["livepulse", "worker"]
