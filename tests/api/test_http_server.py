"""The services' HTTP server under many clients: connections are queued, not refused, and each answer is one send.

A listen backlog of socketserver's default (5) reset or dropped connections as soon as a few more clients than that
connected while the server was busy; an answer written as headers then body (two small sends) met Nagle's
algorithm and the client's delayed ACK on kept-alive connections.
"""

from __future__ import annotations

import http.client
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from orderflow.runtime.http import HttpServer, Request, Response, Route

CLIENTS = 64


def _hello(_request: Request) -> Response:
    return 200, {"hello": "world", "padding": "x" * 2000}


@pytest.fixture
def server() -> Iterator[HttpServer]:
    server = HttpServer(host="127.0.0.1", port=0, routes=[Route("GET", "/hello", _hello)])
    yield server
    server.stop()


def test_clients_connecting_at_once_are_queued_then_served(server: HttpServer) -> None:
    # The server is bound and listening but not yet accepting: every connection must wait in the backlog. With a
    # small backlog the kernel drops the handshakes beyond it, and these connects time out.
    connections = []
    try:
        for _ in range(CLIENTS):
            connections.append(socket.create_connection(("127.0.0.1", server.port), timeout=2))
        server.start()
        for s in connections:
            s.sendall(b"GET /hello HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        for s in connections:
            answer = b""
            while chunk := s.recv(65536):
                answer += chunk
            assert answer.startswith(b"HTTP/1.1 200 "), answer[:100]
            assert b'"hello": "world"' in answer
    finally:
        for s in connections:
            s.close()


def test_an_answer_leaves_in_one_send_without_nagle(server: HttpServer, monkeypatch: pytest.MonkeyPatch) -> None:
    server.start()
    sends: list[tuple[int, int]] = []  # (bytes, TCP_NODELAY) per send by the server's side of a connection
    lock = threading.Lock()
    real_send, real_sendall = socket.socket.send, socket.socket.sendall

    def record(sock: socket.socket, data: Any) -> None:
        if sock.getsockname()[1] == server.port:  # the server's end of an accepted connection
            with lock:
                sends.append((len(data), sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)))

    def send(sock: socket.socket, data: Any, *args: Any) -> int:
        record(sock, data)
        return real_send(sock, data, *args)

    def sendall(sock: socket.socket, data: Any, *args: Any) -> None:
        record(sock, data)
        real_sendall(sock, data, *args)

    monkeypatch.setattr(socket.socket, "send", send)
    monkeypatch.setattr(socket.socket, "sendall", sendall)
    client = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        for _ in range(3):  # one kept-alive connection, three requests
            client.request("GET", "/hello")
            response = client.getresponse()
            assert response.status == 200
            assert b'"hello": "world"' in response.read()
    finally:
        client.close()
    assert len(sends) == 3, sends
    assert all(nodelay for _, nodelay in sends), sends
