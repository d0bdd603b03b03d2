"""``orderflow operator``: run the OrderFlow operator (kopf) in the foreground.

The project's ``orderflow`` command delegates its ``operator`` subcommand to :func:`main`, which is the
equivalent of ``kopf run -m orderflow_operator.handlers --standalone`` with either ``--all-namespaces`` or one
``--namespace`` per watched namespace, and a liveness endpoint for the Pod's probes.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Mapping, Sequence

import kopf

from orderflow_operator import kube

__all__ = ["main"]

# Read by the handlers' login and API client; set from ``--kubeconfig``. Defined in ``kube``, which the handlers
# import, so that the handlers never import this module back.
KUBECONFIG_ENV = kube.KUBECONFIG_ENV


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="orderflow operator",
        description="Scale the consumers of OrderFlow resources by Kafka lag and flow rates; report flow health.",
    )
    scope = parser.add_mutually_exclusive_group(required=True)
    scope.add_argument(
        "-n",
        "--namespace",
        action="append",
        dest="namespaces",
        metavar="NAMESPACE",
        help="watch OrderFlows in this namespace (repeatable)",
    )
    scope.add_argument("-A", "--all-namespaces", action="store_true", help="watch OrderFlows in every namespace")
    parser.add_argument(
        "--liveness",
        metavar="URL",
        help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        metavar="PORT",
        help="serve Prometheus metrics (each flow's lag, targets, replicas, stuck orders) on 0.0.0.0:PORT/metrics",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster, then $KUBECONFIG)")
    parser.add_argument("--log-format", choices=["plain", "full", "json"], default="full")
    level = parser.add_mutually_exclusive_group()
    level.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    level.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def identity(environ: Mapping[str, str] = os.environ) -> str:
    """Who this operator is to kopf: the Pod's name on Kubernetes, else ``<user>@<host>``.

    kopf's own guess calls ``getpass.getuser()``, which raises ``KeyError`` when the process's uid has no passwd
    entry and no ``USER``/``LOGNAME`` is set -- exactly the case of a Pod running a numeric ``runAsUser`` (the
    chart's 65532). The chart passes ``POD_NAME``; kopf's own variable ``POD_ID`` is honoured first.
    """
    pod = environ.get("POD_ID") or environ.get("POD_NAME")
    if pod:
        return pod
    user = environ.get("USER") or environ.get("LOGNAME") or f"uid{os.getuid()}"
    return f"{user}@{socket.gethostname()}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run until SIGINT/SIGTERM; return the process exit code."""
    args = build_parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    kopf.configure(
        verbose=args.verbose,
        quiet=args.quiet,
        log_format=kopf.LogFormat[args.log_format.upper()],
    )
    if args.kubeconfig:
        os.environ[KUBECONFIG_ENV] = args.kubeconfig
    from orderflow_operator import handlers, metrics  # noqa: F401 - importing handlers registers them

    if args.metrics_port is not None:
        metrics.serve(args.metrics_port)

    # kopf's documented way to name the operator; without it kopf asks the passwd database (see identity()).
    os.environ["POD_ID"] = identity()

    kopf.run(
        clusterwide=bool(args.all_namespaces),
        namespaces=tuple(args.namespaces or ()),
        liveness_endpoint=args.liveness,
        standalone=True,
    )
    return 0
