"""Provider side: each committed pact is honoured by its provider's real event-building code.

One test per (consumer, provider) pair, so a pair runs alone (``-k billing-order``). The verifier's own report is
in the assertion message when a pair fails; ``PairResult.mismatches`` names consumer, interaction and field.
"""

import pytest

from orderflow_dev.contracts import expectations, pactfiles, providers, verification


@pytest.mark.parametrize(
    ("consumer", "provider"),
    [pytest.param(c, p, id=f"{c}-{p}", marks=pytest.mark.pair(name=f"{c}-{p}")) for c, p in expectations.pairs()],
)
def test_provider_honours_the_committed_pact(consumer: str, provider: str) -> None:
    result = verification.verify_pair(consumer, provider)
    detail = "\n".join(str(m) for m in result.mismatches)
    assert result.verified, f"{result.pair} failed:\n{detail}\n\n{result.output}"
    assert result.interactions == len(expectations.of_pair(consumer, provider))


def test_every_pair_of_the_catalog_has_a_committed_pact() -> None:
    from orderflow.events import catalog

    expected = {(c, e.producer) for e in catalog.CATALOG.values() for c in e.consumers}
    committed = {(p.consumer, p.provider) for p in pactfiles.load_all(pactfiles.CONTRACTS_DIR)}
    assert committed == expected == set(expectations.pairs())


def test_every_provider_state_a_consumer_names_is_implemented() -> None:
    for e in expectations.EXPECTATIONS:
        assert e.state in providers.STATES[e.provider], f"{e.provider} lacks the provider state {e.state!r} ({e.id})"


def test_an_unknown_provider_state_fails_naming_it(tmp_path: pytest.TempPathFactory) -> None:
    import json
    from pathlib import Path

    out = Path(str(tmp_path))
    doc = json.loads(pactfiles.pact_path(pactfiles.CONTRACTS_DIR, "shipping", "order").read_text())
    doc["interactions"][0]["providerStates"][0]["name"] = "an order placed by carrier pigeon"
    pactfiles.pact_path(out, "shipping", "order").write_text(json.dumps(doc))
    result = verification.verify_pair("shipping", "order", pact_dir=out)
    assert not result.verified
    assert "an order placed by carrier pigeon" in result.output
