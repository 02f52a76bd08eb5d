# Tickler's production image: `docker build -t tickler .`; how to deploy it: docs/deploy.md
# (the steps in order), the README's "Deploy" (the reference).
# No `# syntax=` line: the builder's own Dockerfile frontend is enough, and a named frontend
# would be pulled from a registry at every build.
#
# Two stages on the same base, so that the venv's interpreter symlinks stay valid: the builder
# makes a wheel of the project and installs it with its dependencies into /opt/venv; the
# runtime stage copies only that venv (no compiler, no pip cache, no source tree, no tests).
# Every dependency's version comes from constraints.txt (scripts/lock writes it), so two builds
# of one commit install the same versions.
# No secret is baked in: configuration comes from TICKLER_* variables, TICKLER_*_FILE files
# and /run/secrets at run time.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY constraints.txt pyproject.toml README.md ./
COPY config ./config
COPY calendars ./calendars
COPY jobs ./jobs
COPY scheduler ./scheduler
# The venv gets neither pip nor setuptools (about 23 MB the runtime never uses): the builder's
# pip installs into it from outside (--python).
RUN python -m pip wheel --no-deps --wheel-dir /wheels . \
    && python -m venv --without-pip /opt/venv \
    && python -m pip --python /opt/venv/bin/python install --constraint constraints.txt \
        /wheels/tickler-*.whl \
    && /opt/venv/bin/tickler --version \
    && /opt/venv/bin/tickler check

FROM ${PYTHON_IMAGE} AS runtime
# A fixed uid/gid, so that volumes and secret files can be given to it from the host.
RUN groupadd --system --gid 10001 tickler \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/tickler --no-create-home \
        --shell /usr/sbin/nologin tickler \
    && install -d -o 10001 -g 10001 -m 0750 /var/lib/tickler
COPY --from=builder /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    TICKLER_DATABASE_URL=sqlite:////var/lib/tickler/tickler.sqlite \
    TICKLER_MAILDIR=/var/lib/tickler/maildir \
    TICKLER_HTTP_HOST=0.0.0.0 \
    TICKLER_HTTP_PORT=8080
# The SQLite file, its lock file and the Maildir live here; a new named volume starts out
# owned by tickler because the directory is created (and chowned) before VOLUME. A bind mount
# keeps its owner on the host: it must be writable by uid 10001, or `tickler run` exits 2
# naming the directory.
WORKDIR /var/lib/tickler
VOLUME ["/var/lib/tickler"]
USER 10001:10001
EXPOSE 8080
# `tickler run` stops on SIGTERM: it finishes the sends in flight, closes the HTTP server and
# exits 0. It installs its own handler, so it stops even as PID 1.
STOPSIGNAL SIGTERM
# `tickler healthcheck` asks /healthz where the settings say the server listens, as `tickler
# run` reads them (TICKLER_HTTP_PORT_FILE before TICKLER_HTTP_PORT, a wildcard or a specific
# TICKLER_HTTP_HOST), without importing the server stack; exit 1 when unhealthy. It costs about
# 0.8 s of CPU (pydantic-settings reads the settings; the server stack would be 2.9 s): the
# 10 s timeout leaves room on a busy host, where it took 3.3 s (2 cores at load 11).
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["/opt/venv/bin/tickler", "healthcheck", "--timeout", "3"]
# Exec form: tickler is PID 1 and receives SIGTERM itself (no shell in between).
CMD ["tickler", "run"]
