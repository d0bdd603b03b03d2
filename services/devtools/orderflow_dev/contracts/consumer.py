"""The consumer side: each expectation becomes a Pact V4 message interaction, proven on the consumer's real code.

``check()`` builds the interaction, and Pact hands its example message (reified from the matchers) to a handler
that turns it into the Kafka message a provider would send — body as the value, ``topic`` and ``key`` as the
record's, every other metadata entry as a header — and feeds it to the consumer service's real consumer loop on
a fresh SQLite database seeded with ``given``. The interaction only counts when the loop applied the message (no
dead letter, offset committed) and ``then`` finds the state the consumer's handler must have produced.
``generate()`` does that for every expectation and writes one normalised pact file per pair.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pact import Pact

from orderflow.runtime import Definition
from orderflow.transport import Record
from orderflow_dev.contracts import expectations, messages, pactfiles
from orderflow_dev.contracts.expectations import Expectation
from orderflow_dev.contracts.world import World

# Metadata entries that are properties of the Kafka record, or Pact's own, rather than Kafka headers.
NOT_HEADERS = frozenset({"topic", "key", "contentType"})


class ConsumerContractError(AssertionError):
    """A consumer's real code does not handle the message its own contract describes."""


def definition_of(service: str) -> Definition:
    from importlib import import_module

    definition: Definition = import_module(f"orderflow.{service}").definition
    return definition


def kafka_record(body: str | bytes | None, metadata: Mapping[str, Any]) -> Record:
    """The message a Pact message stands for, in the seam's neutral form (binary content mode: CloudEvent
    attributes as ``ce_`` headers; each transport's binding carries them on its wire)."""
    value = body if isinstance(body, bytes) else str(body or "").encode()
    headers = tuple((name, str(v).encode()) for name, v in sorted(metadata.items()) if name not in NOT_HEADERS)
    return Record(channel=str(metadata["topic"]), key=str(metadata["key"]).encode(), value=value, headers=headers)


def build(expectation: Expectation) -> Pact:
    """A one-interaction pact between the expectation's consumer and provider."""
    e = expectation
    pact = Pact(e.consumer, e.provider).with_specification("V4")
    interaction = pact.upon_receiving(e.description, "Async")
    if e.params:
        interaction.given(e.state, dict(e.params))
    else:
        interaction.given(e.state)
    interaction.with_body(messages.body(e.event_type, e.example, pins=e.pins), "application/json")
    interaction.with_metadata(messages.metadata(e.event_type, keeps=expectations.KEEPS.get(e.consumer, frozenset())))
    if e.reads:
        interaction.add_text_comment(f"{e.consumer} reads {', '.join(e.reads)}; the rest is checked by its decoder")
    return pact


def check(expectation: Expectation) -> Pact:
    """Build the interaction and prove it on the consumer's real consumer loop; ``ConsumerContractError`` if not."""
    pact = build(expectation)
    definition = definition_of(expectation.consumer)

    def deliver(body: str | bytes | None, metadata: dict[str, Any]) -> None:
        with World(definition) as world:
            expectation.given(world)
            world.consume(kafka_record(body, metadata))
            expectation.then(world)

    errors = pact.verify(deliver, "Async", raises=False)
    if errors:
        raise ConsumerContractError(
            "\n".join(
                f"{expectation.pair}: {str(e.description)!r}: {type(e.error).__name__}: {e.error}" for e in errors
            )
        )
    return pact


def generate(directory: Path, *, only: list[tuple[str, str]] | None = None) -> list[Path]:
    """Check every expectation and write the normalised pact of each (consumer, provider) pair to ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with tempfile.TemporaryDirectory(prefix="pacts-") as scratch:
        for consumer, provider in only or expectations.pairs():
            documents = []
            for n, expectation in enumerate(expectations.of_pair(consumer, provider)):
                out = Path(scratch) / f"{consumer}-{provider}-{n}"
                check(expectation).write_file(out, overwrite=True)
                documents.append(json.loads(pactfiles.pact_path(out, consumer, provider).read_text()))
            path = pactfiles.pact_path(directory, consumer, provider)
            path.write_text(pactfiles.dumps(pactfiles.merge(documents)))
            written.append(path)
    return written
