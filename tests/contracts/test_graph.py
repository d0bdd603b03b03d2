"""The flow graph read from the pacts equals what the services' code subscribes to and publishes.

An event a service handles without a contract, a contract for an event its consumer does not handle, or one for
an event its provider never emits, must fail — the negative tests feed such disagreements to ``graph.problems``.
"""

from orderflow.events import catalog
from orderflow_dev.contracts import artifacts, graph, pactfiles


def test_the_graph_of_the_pacts_is_the_graph_of_the_code() -> None:
    problems = graph.check()
    assert not problems, "\n".join(problems)


def test_every_contract_edge_is_a_real_subscription_and_publication() -> None:
    edges = graph.from_pacts()
    consumes, publishes = graph.subscriptions(), graph.publications()
    assert {(e.consumer, e.event_type) for e in edges} == {(s, t) for s, ts in consumes.items() for t in ts}
    assert {(e.producer, e.event_type) for e in edges} <= {(s, t) for s, ts in publishes.items() for t in ts}
    assert all(e.topic == catalog.get(e.event_type).topic("orderflow") for e in edges)


def test_emits_are_found_in_the_code_and_agree_with_the_catalog() -> None:
    for service in catalog.SERVICES:
        found = graph.emits(service)
        assert found and all(e.event_type for e in found), found
        assert {e.event_type for e in found} == {t.type for t in catalog.produced_by(service)}


def _problems(**changes: object) -> list[str]:
    args: dict[str, object] = {
        "contracts": graph.from_pacts(),
        "consumes": graph.subscriptions(),
        "publishes": graph.publications(),
    }
    args.update(changes)
    return graph.problems(args.pop("contracts"), **args)  # type: ignore[arg-type]


def test_an_event_consumed_without_a_contract_fails() -> None:
    edges = {e for e in graph.from_pacts() if (e.consumer, e.event_type) != ("billing", catalog.STOCK_REJECTED)}
    assert "billing consumes StockRejected (dev.orderflow.stock.rejected.v1) but has no contract for it" in _problems(
        contracts=edges
    )


def test_a_contract_for_an_event_nobody_consumes_fails() -> None:
    consumes = graph.subscriptions()
    consumes["order"].discard(catalog.PAYMENT_REFUNDED)
    problems = _problems(consumes=consumes)
    assert "contract order-billing: order does not consume PaymentRefunded" in problems
    assert any("PaymentRefunded: the catalog lists consumers ['order']" in p for p in problems)


def test_a_contract_for_an_event_nobody_produces_fails() -> None:
    publishes = graph.publications()
    publishes["billing"].discard(catalog.PAYMENT_REFUNDED)
    assert "contract order-billing: billing never emits PaymentRefunded" in _problems(publishes=publishes)


def test_an_event_emitted_by_the_wrong_service_or_outside_the_catalog_fails() -> None:
    publishes = graph.publications()
    publishes["shipping"] |= {catalog.STOCK_RELEASED, "dev.orderflow.shipment.lost.v1"}
    problems = _problems(publishes=publishes)
    assert any("stock.released.v1 is emitted by inventory, shipping" in p for p in problems), problems
    assert any("dev.orderflow.shipment.lost.v1, which is not in the event catalog" in p for p in problems), problems


def test_the_readme_shows_the_graph_of_the_committed_pacts() -> None:
    readme = (pactfiles.CONTRACTS_DIR / artifacts.README_FILE).read_text()
    assert artifacts.block(pactfiles.CONTRACTS_DIR) in readme
    mermaid = graph.mermaid(graph.from_pacts())
    for e in graph.from_pacts():
        name = catalog.get(e.event_type).name
        assert f"svc_{e.producer} --> ev_{name}" in mermaid
        assert f"ev_{name} --> svc_{e.consumer}" in mermaid
