"""connections.closed_without_answer, told from the failures it must not take for one, each as
azure-core's requests transport raises it against a loopback socket that behaves so."""

from __future__ import annotations

import socket
import threading
import time

import pytest
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
from urllib3.exceptions import ProtocolError

from acr_webhook.connections import caused_by, closed_without_answer, connection_refused


def failure(port: int, read_timeout: float = 5) -> AzureError:
    with RequestsTransport() as transport:
        try:
            transport.send(
                HttpRequest("POST", f"http://127.0.0.1:{port}/docs", content=b"{}"),
                connection_timeout=1,
                read_timeout=read_timeout,
            )
        except AzureError as error:
            return error
    raise AssertionError("the loopback socket answered")


def read_request(connection: socket.socket) -> None:
    """The whole request, its body ``{}`` included: the transport may send the body apart from
    the headers, and a socket closed with bytes unread sends a reset, which made a "hold" (and
    a "close") a reset on some runs."""
    received = b""
    while not received.endswith(b"\r\n\r\n{}"):
        chunk = connection.recv(65536)
        if not chunk:
            return
        received += chunk


def serve_once(listener: socket.socket, then: str) -> threading.Thread:
    """Accepts one connection, reads the request, then closes it or resets it, or holds it
    unanswered until the test's listener closes."""

    def run() -> None:
        connection, _ = listener.accept()
        with connection:
            read_request(connection)
            if then == "reset":  # RST instead of FIN
                connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
            elif then == "hold":
                connection.recv(1)  # until the client gives up and closes

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.mark.parametrize("then", ["close", "reset"])
def test_a_connection_closed_or_reset_after_the_request_is_closed_without_answer(
    listener: socket.socket, then: str
) -> None:
    serve_once(listener, then)
    error = failure(listener.getsockname()[1])
    assert isinstance(error, ServiceResponseError)
    assert closed_without_answer(error)
    assert not connection_refused(error)


def test_an_answer_that_never_came_in_time_is_not(listener: socket.socket) -> None:
    """A read timeout is the database not answering: tried again, it would wait again."""
    serve_once(listener, "hold")
    error = failure(listener.getsockname()[1], read_timeout=0.2)
    assert isinstance(error, ServiceResponseError)
    assert not closed_without_answer(error)


def test_a_refused_connection_is_not() -> None:
    held = socket.create_server(("127.0.0.1", 0))
    port = held.getsockname()[1]
    held.close()  # nothing listens there now: refused at once
    error = failure(port)
    assert isinstance(error, ServiceRequestError)
    assert connection_refused(error)
    assert not closed_without_answer(error)


def test_a_tls_handshake_the_other_side_closed_is(listener: socket.socket) -> None:
    """TLS's EOF (ssl.SSLEOFError), as the benchmark met it writing on a kept-alive connection
    the server had closed (ServiceRequestError, "EOF occurred in violation of protocol"): here
    the server reads the ClientHello and closes, as one that drops new connections does."""

    def run() -> None:
        connection, _ = listener.accept()
        with connection:
            connection.recv(65536)
            time.sleep(0.05)  # the whole ClientHello read: a close, not a reset

    threading.Thread(target=run, daemon=True).start()
    with RequestsTransport() as transport:
        try:
            transport.send(
                HttpRequest("POST", f"https://127.0.0.1:{listener.getsockname()[1]}/docs"),
                connection_timeout=1,
                read_timeout=2,
                connection_verify=False,  # never reached: the handshake ends first
            )
        except ServiceRequestError as error:
            assert closed_without_answer(error)
            assert not connection_refused(error)
            return
    raise AssertionError("the handshake did not fail")


# --- connections.closed_without_answer: an answer cut off is an answer -----------------------


def test_an_answer_cut_off_in_its_body_is_not_closed_without_answer(
    listener: socket.socket,
) -> None:
    """connections.closed_without_answer: "broke off after the request went out and before an
    answer". Here the status line came (201), then the connection closed 97 bytes short of the
    body: azure-core's IncompleteReadError, whose causes hold urllib3's ProtocolError too. The
    queue took that message; sent again, the event would be parked twice for nothing. Kills:
    the ``isinstance(error, ServiceResponseError)`` check dropped."""

    def answer_short() -> None:
        connection, _ = listener.accept()
        with connection:
            read_request(connection)
            connection.sendall(b"HTTP/1.1 201 Created\r\nContent-Length: 100\r\n\r\nabc")

    threading.Thread(target=answer_short, daemon=True).start()
    error = failure(listener.getsockname()[1])
    assert isinstance(error, HttpResponseError)
    assert caused_by(error, ProtocolError)  # what makes the check above it needed
    assert not closed_without_answer(error)
