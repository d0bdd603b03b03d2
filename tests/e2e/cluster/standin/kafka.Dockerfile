# LOCAL STAND-IN for apache/kafka (the image charts/dev/kafka names), for the e2e suite only: Debian's Java 17 and
# the Kafka jars the project fetches from Maven Central, laid out like the official image where the chart looks
# (/opt/kafka/bin/kafka-storage.sh, kafka-server-start.sh; user appuser, uid 1000). Users pull the official image.
ARG BASE
FROM ${BASE}
RUN apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb \
    && useradd --uid 1000 --user-group --no-create-home --home-dir /opt/kafka --shell /usr/sbin/nologin appuser
COPY libs/ /opt/kafka/libs/
COPY kafka-scripts/ /opt/kafka/bin/
COPY log4j2.properties /opt/kafka/config/log4j2.properties
USER 1000:1000
