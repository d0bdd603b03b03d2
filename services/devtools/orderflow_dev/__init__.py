"""Developer tooling that ships with OrderFlow: the local Kafka broker, the process harness the demo and the
tests share, and the Pact contract tooling behind `orderflow contracts`."""
