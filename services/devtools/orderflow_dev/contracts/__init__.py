"""Consumer-driven Pact V4 message contracts between the four services, checked without a broker.

Why this exists: the services are choreographed, so no end-to-end test can say *which* change broke *whom*.
Each consumer states what it relies on in each provider's events (``expectations``), proves it on its own real
consumer loop (``consumer``), and the resulting pacts in ``contracts/`` are verified against each provider's real
event-building code (``providers``, ``verification``). ``graph`` checks the contracts cover exactly what the code
subscribes to and publishes; ``asyncapi`` publishes the catalog as AsyncAPI 3.0; ``artifacts`` regenerates and
drift-checks all of it; ``cli`` is ``orderflow contracts``.

Pact's usage telemetry is switched off for every process that imports this package.
"""

import os

os.environ["PACT_DO_NOT_TRACK"] = "true"  # before pact is imported by the modules below

from orderflow_dev.contracts import (
    artifacts,
    asyncapi,
    consumer,
    expectations,
    graph,
    pactfiles,
    providers,
    verification,
)
from orderflow_dev.contracts.cli import main

__all__ = [
    "artifacts",
    "asyncapi",
    "consumer",
    "expectations",
    "graph",
    "main",
    "pactfiles",
    "providers",
    "verification",
]
