"""Provider verification: replay a consumer's pact against the provider's real code and say what broke, where.

Pact's Python exception on failure is generic ("failed to execute verifier"); the detail is in the verifier's
results. ``PairResult`` keeps both the verifier's text output and its results, and ``mismatches`` flattens them to
(consumer, interaction, field, detail) — the "who breaks whom, where" a provider developer needs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pact import Verifier
from pact.types import Message

from orderflow_dev.contracts import consumer, pactfiles, providers
from orderflow_dev.contracts.world import World


@dataclass(frozen=True, slots=True)
class Mismatch:
    consumer: str
    interaction: str
    field: str
    detail: str

    def __str__(self) -> str:
        return f"{self.consumer}: {self.interaction!r}: {self.field}: {self.detail}"


@dataclass(frozen=True, slots=True)
class PairResult:
    consumer: str
    provider: str
    verified: bool
    output: str
    results: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    provider_errors: tuple[tuple[str, str], ...] = ()

    @property
    def pair(self) -> str:
        return f"{self.consumer}-{self.provider}"

    @property
    def interactions(self) -> int:
        return len(self.results.get("interactionResults", []))

    @property
    def mismatches(self) -> list[Mismatch]:
        # What the provider's own code raised comes first: the verifier only sees the relay's HTTP 500.
        found = [Mismatch(self.consumer, what, "provider", detail) for what, detail in self.provider_errors]
        for result in self.results.get("interactionResults", []):
            mismatch = result.get("mismatch")
            if not mismatch:
                continue
            who, what = result.get("consumer", self.consumer), result.get("description", "?")
            details = mismatch.get("mismatches") or [mismatch]
            for d in details:
                where = d.get("path") or d.get("key") or d.get("type", "error")
                found.append(Mismatch(who, what, str(where), str(d.get("mismatch") or d.get("message") or d)))
        if not found and self.error:
            found.append(Mismatch(self.consumer, "?", "verifier", self.error))
        return found


class _Session:
    """The verifier's two callbacks for one provider: set provider states up, produce the message for each."""

    def __init__(self, provider: str) -> None:
        self.provider = provider
        self.states = providers.STATES[provider]
        self.definition = consumer.definition_of(provider)
        self.scenes: dict[str, providers.Scene] = {}
        self.failed: dict[str, Exception] = {}
        self.errors: list[tuple[str, str]] = []

    def state(self, state: str, action: Literal["setup", "teardown"], parameters: dict[str, Any] | None) -> None:
        if not state:
            return
        if action == "teardown":
            self.failed.pop(state, None)
            scene = self.scenes.pop(state, None)
            if scene is not None:
                scene.world.close()
            return
        if state not in self.states:
            # Reported by ``produce``: the verifier retries a failing state callback with back-off for minutes.
            return
        try:
            self.scenes[state] = scene = providers.Scene(World(self.definition), dict(parameters or {}))
            self.states[state].seed(scene)
        except Exception as e:  # reported by ``produce``, for the same reason as an unknown state
            self.failed[state] = e

    def produce(self, name: str, metadata: dict[str, Any] | None) -> Message:
        try:
            return self._produce(str(name), metadata)
        except Exception as e:
            self.errors.append((str(name), f"{type(e).__name__}: {e}"))
            raise

    def _produce(self, name: str, metadata: dict[str, Any] | None) -> Message:
        states = [s["name"] for s in (metadata or {}).get("providerStates", [])]
        unknown = [s for s in states if s not in self.states]
        if unknown:
            raise providers.ProviderStateError(f"{self.provider} does not implement the provider state {unknown[0]!r}")
        if len(states) == 1 and states[0] in self.failed:
            error = self.failed[states[0]]
            raise providers.ProviderStateError(f"setting up {states[0]!r} failed: {error}") from error
        if len(states) != 1 or states[0] not in self.scenes:
            raise providers.ProviderStateError(f"{name!r}: expected one provider state, got {states}")
        scene = self.scenes[states[0]]
        self.states[states[0]].act(scene)
        published = scene.world.published()
        if len(published) != 1:
            types = [p.header_map.get("ce_type") for p in published]
            raise providers.ProviderStateError(f"{self.provider} published {len(published)} events {types}, not one")
        event = published[0]
        # The message handler must return ``contents``: without it pact-python's relay fails with a misleading error.
        return Message(
            contents=event.value,
            metadata={**event.header_map, "topic": event.topic, "key": event.key.decode()},
            content_type=event.header_map.get("content-type"),
        )

    def close(self) -> None:
        for scene in self.scenes.values():
            scene.world.close()
        self.scenes.clear()


def _close_relays(verifier: Verifier) -> None:
    """Close the listening sockets of pact-python's message relay and state callback servers.

    pact-python 4.2 shuts both servers down after a verification but never calls ``server_close()``, which leaks
    their sockets (a ``ResourceWarning``, an error under ``-W error``). Defensive on purpose: private attributes.
    """
    for name in ("_message_producer", "_state_handler"):
        server = getattr(getattr(verifier, name, None), "_server", None)
        close = getattr(server, "server_close", None)
        if callable(close):
            close()


def verify_provider(
    provider: str, *, consumers: list[str] | None = None, pact_dir: Path = pactfiles.CONTRACTS_DIR
) -> list[PairResult]:
    """Verify the pacts of ``consumers`` (default: every pact in ``pact_dir`` naming ``provider``) in one run.

    One verifier run per provider rather than per pair: each run costs about a second of server shutdown.
    Every ``PairResult`` carries the structured results of its own pair and the text output of the whole run.
    """
    names = (
        consumers
        if consumers is not None
        else sorted(f.consumer for f in pactfiles.load_all(pact_dir) if f.provider == provider)
    )
    paths = {c: pactfiles.pact_path(pact_dir, c, provider) for c in names}
    missing = [
        PairResult(c, provider, False, "", error=f"no pact file {p}") for c, p in paths.items() if not p.is_file()
    ]
    present = [c for c, p in paths.items() if p.is_file()]
    if not present:
        return missing
    session = _Session(provider)
    verifier = (
        Verifier(provider)
        .message_handler(session.produce)
        .state_handler(session.state, teardown=True)
        .set_coloured_output(enabled=False)
        .set_error_on_empty_pact(enabled=True)
    )
    for c in present:
        verifier.add_source(paths[c])
    error = None
    try:
        verifier.verify()
    except RuntimeError as e:
        error = str(e)
    finally:
        session.close()
        _close_relays(verifier)
    results = verifier.results
    output = verifier.output(strip_ansi=True)
    # A failure the verifier could not attribute to an interaction (e.g. a broken pact file) fails every pair.
    attributed = any(r.get("mismatch") for r in results.get("interactionResults", []))
    unattributed = error if error and not attributed else None
    split: list[PairResult] = []
    for c in present:
        mine = [r for r in results.get("interactionResults", []) if r.get("consumer") == c]
        ok = bool(mine) and all(r.get("result") == "OK" for r in mine)
        pair_results = {**results, "interactionResults": mine, "result": ok}
        failed_here = {str(r.get("description")) for r in mine if r.get("result") != "OK"}
        raised = tuple((d, m) for d, m in session.errors if d in failed_here)
        text = output + "".join(f"\nProvider error in {d!r}: {m}" for d, m in raised)
        split.append(PairResult(c, provider, ok and unattributed is None, text, pair_results, unattributed, raised))
    return sorted(missing + split, key=lambda r: r.consumer)


def verify_pair(consumer_name: str, provider: str, *, pact_dir: Path = pactfiles.CONTRACTS_DIR) -> PairResult:
    """Verify ``<consumer>-<provider>.json`` in ``pact_dir`` alone against the provider's real code."""
    return verify_provider(provider, consumers=[consumer_name], pact_dir=pact_dir)[0]
