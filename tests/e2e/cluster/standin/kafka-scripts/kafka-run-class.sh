#!/bin/sh
# Stand-in for Kafka's bin/kafka-run-class.sh: the JVM on the jars in /opt/kafka/libs, logging to stdout.
# shellcheck disable=SC2086  # KAFKA_HEAP_OPTS / KAFKA_OPTS are word lists, as in the official scripts
exec java ${KAFKA_HEAP_OPTS:--Xmx256m} ${KAFKA_OPTS:-} -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
    -cp '/opt/kafka/libs/*' "$@"
