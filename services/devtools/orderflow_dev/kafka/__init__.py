"""A real, local Apache Kafka broker that OrderFlow fetches and runs by itself (developer tooling).

Why this exists: OrderFlow's services exchange CloudEvents over Kafka, and their tests, the demo and a
developer's own experiments need a real broker, not a fake. There is no Docker here and no Kafka tarball
download, but Maven Central is reachable, so the broker is assembled from its published jars and run with the
local ``java``. One module per job:

* ``jars`` -- fetch the jars with Maven (``pom.xml``) into ``${ORDERFLOW_CACHE:-~/.cache/orderflow}/kafka``;
* ``broker`` -- :class:`LocalBroker`, a private broker process in a temp (or given) directory;
* ``daemon`` -- the background broker of ``orderflow kafka start|stop|status``, found through a pid file;
* ``ensure`` -- :func:`ensure_broker`, what tests and the demo call: ``ORDERFLOW_KAFKA_BOOTSTRAP`` if set, else
  the running daemon, else a private broker for the duration;
* ``cli`` -- :func:`main`, the command line.

Importing it does no I/O: the POM is read the first time the Kafka version is needed.
"""

from orderflow_dev.kafka.broker import LocalBroker, broker_answers
from orderflow_dev.kafka.cli import main
from orderflow_dev.kafka.daemon import DEFAULT_DAEMON_PORT, DaemonStatus, daemon_status, start_daemon, stop_daemon
from orderflow_dev.kafka.ensure import BOOTSTRAP_ENV, ensure_broker
from orderflow_dev.kafka.errors import BrokerStartError, BrokerUnreachableError, KafkaToolError, ToolMissingError
from orderflow_dev.kafka.files import cache_dir, daemon_dir
from orderflow_dev.kafka.jars import ensure_jars, kafka_version

__all__ = [
    "BOOTSTRAP_ENV",
    "DEFAULT_DAEMON_PORT",
    "BrokerStartError",
    "BrokerUnreachableError",
    "DaemonStatus",
    "KafkaToolError",
    "LocalBroker",
    "ToolMissingError",
    "broker_answers",
    "cache_dir",
    "daemon_dir",
    "daemon_status",
    "ensure_broker",
    "ensure_jars",
    "kafka_version",
    "main",
    "start_daemon",
    "stop_daemon",
]
