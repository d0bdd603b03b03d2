# LOCAL STAND-IN for the official postgres image (the image charts/dev/postgres names), for the e2e suite only:
# Debian bookworm's PostgreSQL 15 (the official image the chart pins is 17) behind a small entrypoint that does what
# the chart relies on: POSTGRES_USER/POSTGRES_PASSWORD/PGDATA, initdb on an empty data directory, the *.sql files of
# /docker-entrypoint-initdb.d, and `postgres <args>`; user postgres, uid 999. Users pull the official image.
ARG BASE
FROM ${BASE}
RUN groupadd --system --gid 999 postgres \
    && useradd --system --uid 999 --gid 999 --home-dir /var/lib/postgresql --shell /bin/sh postgres \
    && apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends postgresql-15 \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && install -d -o postgres -g postgres /var/run/postgresql /var/lib/postgresql/data
ENV PATH=/usr/lib/postgresql/15/bin:$PATH
COPY postgres-entrypoint.sh /usr/local/bin/docker-entrypoint.sh
USER 999:999
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
