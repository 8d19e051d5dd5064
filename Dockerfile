# The wallet-personas worker: `personas run` against the Kafka named by PERSONAS_BROKER.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY config ./config
COPY agents ./agents
COPY streams ./streams
# The rebuild's compiled kernel goes into numba's cache at build time, not at the first rebuild
# (from /, so that the installed package is the one compiled, not the copy in /app).
RUN pip install . \
    && cd / && python -c 'from agents.core.shard_kernel import compile_kernel; compile_kernel()' \
    && useradd --create-home --uid 10001 personas \
    && mkdir /data && chown personas /data

USER personas
VOLUME ["/data"]
ENV PERSONAS_DB=/data/personas.db
EXPOSE 6066
# SIGTERM lets the worker finish its batch, commit and leave the group (worker.shutdown_timeout_s).
STOPSIGNAL SIGTERM
CMD ["personas", "run"]
