"""Developer tooling that ships with OrderFlow: a local Kafka broker."""
