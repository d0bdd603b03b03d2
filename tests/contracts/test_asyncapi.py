"""contracts/asyncapi.yaml: the catalog as AsyncAPI 3.0, validated by the official parser (@asyncapi/parser).

The validator is installed on first use by contracts/tools/install-asyncapi.sh (npm, pinned by its lock file);
the negative tests prove it rejects invalid documents, so a passing validation means something.
"""

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from orderflow.events import catalog
from orderflow_dev.contracts import artifacts, asyncapi, consumer, pactfiles

COMMITTED = pactfiles.CONTRACTS_DIR / artifacts.ASYNCAPI_FILE


def test_the_committed_document_is_valid_asyncapi_3() -> None:
    result = asyncapi.validate(COMMITTED)
    assert result.valid, result.output
    assert "valid AsyncAPI 3.0.0 (0 error(s), 0 warning(s)" in result.output


BREAKAGES: dict[str, tuple[Callable[[dict[str, Any]], object], str]] = {
    "no-title": (lambda d: d["info"].pop("title"), 'must have required property "title"'),
    "bad-action": (lambda d: d["operations"]["inventoryReceivesOrders"].update(action="listen"), '"send", "receive"'),
    "foreign-message": (
        lambda d: d["operations"]["billingReceivesOrders"]["messages"][0].update(
            {"$ref": "#/channels/payments/messages/OrderCreated"}
        ),
        "does not belong to the specified channel",
    ),
    "bad-schema-type": (
        lambda d: d["components"]["schemas"]["OrderCreated"].update(type="orderish"),
        '"type" property must be equal to one of the allowed values',
    ),
    "missing-channel": (lambda d: d["channels"].pop("shipments"), "'#/channels/shipments' does not exist"),
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> dict[str, asyncapi.Validation]:
    """Every broken variant of the document, validated in one run of the validator."""
    directory = tmp_path_factory.mktemp("asyncapi")
    paths: dict[str, Path] = {}
    for name, (breakage, _reported) in BREAKAGES.items():
        doc = asyncapi.document()
        breakage(doc)
        paths[name] = directory / f"{name}.yaml"
        paths[name].write_text(yaml.safe_dump(doc, sort_keys=False))
    results = asyncapi.validate_all(list(paths.values()))
    return {name: results[path] for name, path in paths.items()}


@pytest.mark.parametrize("name", list(BREAKAGES))
def test_an_invalid_document_fails_validation(broken: dict[str, asyncapi.Validation], name: str) -> None:
    result, reported = broken[name], BREAKAGES[name][1]
    assert not result.valid, result.output
    assert "INVALID" in result.output and reported in result.output, result.output


def test_channels_are_the_topics_and_messages_the_catalog_types() -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    assert doc["asyncapi"] == "3.0.0"
    assert sorted(c["address"] for c in doc["channels"].values()) == sorted(catalog.all_topics("orderflow"))
    messages = doc["components"]["messages"]
    for entry in catalog.CATALOG.values():
        message = messages[entry.name]
        assert message["headers"]["properties"]["ce_type"]["const"] == entry.type
        schema = {k: v for k, v in entry.schema.items() if k != "$schema"}
        assert doc["components"]["schemas"][entry.name] == schema
        assert doc["channels"][entry.stream]["messages"][entry.name] == {"$ref": f"#/components/messages/{entry.name}"}


def test_operations_are_what_each_service_sends_and_receives() -> None:
    doc = yaml.safe_load(COMMITTED.read_text())
    by_name = {m["name"]: t for t, m in ((t, doc["components"]["messages"][e.name])
                                         for t, e in catalog.CATALOG.items())}
    for service in catalog.SERVICES:
        sent: set[str] = set()
        received: set[str] = set()
        for op in doc["operations"].values():
            if op["tags"] != [{"name": service}]:
                continue
            names = {ref["$ref"].rsplit("/", 1)[-1] for ref in op["messages"]}
            (sent if op["action"] == "send" else received).update(by_name[n] for n in names)
        assert sent == {e.type for e in catalog.produced_by(service)}
        assert received == set(consumer.definition_of(service).handlers)
