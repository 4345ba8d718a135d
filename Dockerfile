# EWS Luwu Timur: one image for every role (`ews run --role all|ingest|worker|api`).
# Build: docker build -t ews-lutim .        Run: see compose.yaml and docs/deploy.md.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    EWS_HTTP_HOST=0.0.0.0 \
    EWS_HTTP_PORT=8080

# A fixed, unprivileged user; /data holds a SQLite database when no PostgreSQL is configured.
RUN groupadd --system --gid 10001 ews \
    && useradd --system --uid 10001 --gid ews --home-dir /data --no-create-home --shell /usr/sbin/nologin ews \
    && mkdir -p /data \
    && chown ews:ews /data

WORKDIR /src
# Dependencies first (cached while only the code changes): psycopg[binary] ships its own libpq.
COPY pyproject.toml README.md ./
COPY alerts ./alerts
COPY sensors ./sensors
COPY config ./config
COPY service ./service
# sinks/ (the test stand-in for Twilio that tests and ews bench use) stays out of the image.
RUN pip install . \
    && rm -rf /src/build

WORKDIR /data
USER 10001:10001
ENV EWS_DATABASE_URL=sqlite:////data/ews.db

EXPOSE 8080
# /healthz answers 200 while the process serves HTTP (every role serves it); no curl in the image.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request, sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('EWS_HTTP_PORT', '8080'), timeout=4).status == 200 else 1)"]

# SIGTERM stops it cleanly (the batch in hand is committed and acknowledged first).
STOPSIGNAL SIGTERM
CMD ["ews", "run"]
