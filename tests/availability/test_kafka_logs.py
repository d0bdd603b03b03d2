"""librdkafka's log lines go through the service's JSON logger, with level, facility and client, rate-limited.

Regression: librdkafka wrote its own ``%3|...|FAIL|rdkafka#...`` lines into the JSON log stream (457 in one
service's log during a broker outage), which a log pipeline that expects JSON lines drops or chokes on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator

import pytest
from confluent_kafka import Producer

from orderflow.runtime import http, logs
from orderflow.transport.kafka import clientlog as kafkalog
from orderflow_dev.stack import free_port
from orderflow_dev.wait import until


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def captured() -> Iterator[_Capture]:
    handler = _Capture()
    logger = logging.getLogger(kafkalog.log.name)
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    yield handler
    logger.removeHandler(handler)
    logger.setLevel(logging.NOTSET)


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_real_client_logs_and_errors_reach_the_logger_as_records_with_facility_and_client(
    captured: _Capture,
) -> None:
    downs: list[str] = []
    kafka_log = kafkalog.KafkaLog(on_all_brokers_down=downs.append)
    producer = Producer(
        {"bootstrap.servers": f"127.0.0.1:{free_port()}", "client.id": "orderflow-test", **kafka_log.config()}
    )
    until(lambda: producer.poll(0.1) is not None and downs, timeout=30, what="the client to report the broker down")
    by_facility = {r.__dict__["facility"]: r for r in captured.records}
    fail = by_facility["FAIL"]  # librdkafka's own log line about the refused connection
    assert fail.levelno == logging.ERROR and fail.__dict__["client"].startswith("orderflow-test#producer")
    assert "Connection refused" in fail.getMessage()
    assert by_facility["_ALL_BROKERS_DOWN"].levelno == logging.WARNING  # the error callback, as a record too
    line = json.loads(logs.JsonFormatter("test").format(fail))
    assert line["facility"] == "FAIL" and line["client"] == fail.__dict__["client"] and line["level"] == "ERROR"


def test_repeated_messages_are_let_through_once_per_window_with_a_count(captured: _Capture) -> None:
    clock = _Clock()
    kafka_log = kafkalog.KafkaLog(window=30, clock=clock)
    for port in range(100):  # the same message but for its numbers: one line
        kafka_log.log(logging.ERROR, "%s [%s] %s", "FAIL", "c#consumer-1", f"Connect to 127.0.0.1:{port} failed")
    kafka_log.log(logging.ERROR, "%s [%s] %s", "FAIL", "c#consumer-1", "Name resolution failed")  # another one
    assert [r.getMessage() for r in captured.records] == ["Connect to 127.0.0.1:0 failed", "Name resolution failed"]
    clock.now += 31
    kafka_log.log(logging.ERROR, "%s [%s] %s", "FAIL", "c#consumer-1", "Connect to 127.0.0.1:7 failed")
    last = captured.records[-1]
    assert last.getMessage() == "Connect to 127.0.0.1:7 failed (99 more like it in the last 31s)"
    assert last.__dict__["suppressed"] == 99


def test_the_threshold_maps_to_librdkafkas_syslog_level() -> None:
    assert kafkalog.KafkaLog(level="WARNING").config()["log_level"] == 4
    assert kafkalog.KafkaLog(level="DEBUG").config()["log_level"] == 7


def test_a_client_that_hangs_up_is_logged_as_json_not_a_traceback_on_stderr(
    capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: socketserver printed a BrokenPipeError traceback to stderr when a client gave up waiting
    (seen in the chaos run's order log), outside the JSON log stream."""
    server = http.HttpServer(host="127.0.0.1", port=0, routes=[])
    server.start()
    try:
        raise BrokenPipeError(32, "Broken pipe")
    except BrokenPipeError:
        with caplog.at_level(logging.INFO, logger=http.log.name):
            server._server.handle_error(None, ("127.0.0.1", 1))
    finally:
        server.stop()
    assert capfd.readouterr().err == ""
    assert "went away" in caplog.text
