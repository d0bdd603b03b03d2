"""The OrderFlow operator: scales a flow's Kafka consumers by lag and by the rates the flow carries.

Exists so that ``kubectl apply`` of an ``OrderFlow`` (group ``orderflow.dev``) is all a user does to get each
stage's Deployment sized between its bounds, and to read the flow's health from ``kubectl get of``.
The public surface is :func:`main` (the ``orderflow operator`` command) and the pure scaling decision.
"""

from typing import TYPE_CHECKING, Any

from orderflow_operator.scaling import Decision, Inputs, Policy, Reason, Recommendation, decide

if TYPE_CHECKING:
    from orderflow_operator.cli import main

__all__ = [
    "Decision",
    "Inputs",
    "Policy",
    "Reason",
    "Recommendation",
    "decide",
    "main",
]


def __getattr__(name: str) -> Any:
    # ``main`` needs kopf; the Kafka and flow-health readers (offsets, flowhealth, rates) do not, and the
    # ``orderflow flow`` command imports them without paying for kopf.
    if name == "main":
        from orderflow_operator.cli import main

        return main
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
