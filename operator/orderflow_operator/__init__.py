"""The OrderFlow operator: scales a flow's Kafka consumers by lag and by the rates the flow carries.

Exists so that ``kubectl apply`` of an ``OrderFlow`` (group ``orderflow.dev``) is all a user does to get each
stage's Deployment sized between its bounds, and to read the flow's health from ``kubectl get of``.
The public surface is :func:`main` (the ``orderflow operator`` command) and the pure scaling decision.
"""

from orderflow_operator.cli import main
from orderflow_operator.scaling import Decision, Inputs, Policy, Reason, Recommendation, decide

__all__ = [
    "Decision",
    "Inputs",
    "Policy",
    "Reason",
    "Recommendation",
    "decide",
    "main",
]
