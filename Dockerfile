# Build the bot's wheel, then install it into a slim image that runs as a non-root user.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bot ./bot
RUN pip wheel --no-cache-dir --no-deps --wheel-dir /wheels .

FROM python:3.11-slim
# A font with Cyrillic and other alphabets for the names on /cast's contact sheet (Pillow's own is Latin only).
RUN apt-get update && apt-get install -y --no-install-recommends fonts-dejavu-core \
    && rm -rf /var/lib/apt/lists/*
RUN useradd --create-home --uid 10001 seqbot \
    && mkdir /data && chown seqbot:seqbot /data
# The dependencies exactly as locked (versions and hashes; see the README to refresh the lock),
# then the bot itself without resolving anything again.
COPY requirements.lock /tmp/requirements.lock
RUN pip install --no-cache-dir --require-hashes -r /tmp/requirements.lock && rm /tmp/requirements.lock
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir --no-deps /wheels/*.whl && rm -rf /wheels
USER seqbot
WORKDIR /home/seqbot
# In webhook mode the server listens on the container's interface (the bot's default, 127.0.0.1,
# is unreachable from outside a container); publish WEBHOOK_PORT on the host's loopback only.
ENV DATABASE_PATH=/data/seqbot.sqlite3 \
    WEBHOOK_LISTEN=0.0.0.0 \
    PYTHONUNBUFFERED=1
# The job database lives on a volume, so jobs survive a new container.
VOLUME ["/data"]
# The running bot touches a heartbeat file beside the database every 30 s.
HEALTHCHECK --interval=60s --timeout=10s --start-period=30s --retries=3 \
    CMD ["python", "-m", "bot", "healthcheck"]
# docker stop sends SIGTERM to python itself (exec form below): it stops cleanly, jobs resume later.
STOPSIGNAL SIGTERM
# TELEGRAM_BOT_TOKEN and RUNCOMFY_API_TOKEN come from `docker run --env-file .env`.
CMD ["python", "-m", "bot"]
