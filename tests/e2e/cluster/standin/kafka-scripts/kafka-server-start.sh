#!/bin/sh
# Stand-in for Kafka's bin/kafka-server-start.sh (honours KAFKA_HEAP_OPTS like the original).
exec /opt/kafka/bin/kafka-run-class.sh kafka.Kafka "$@"
