"""A small local stand-in for the management endpoint's ``webhooks/listEvents``, over HTTPS.

It serves the documented REST shape (the REST API spec's WebhookListEvents example: a POST to
``{registry id}/webhooks/{name}/listEvents?api-version=...`` answers
``{"value": [Event, ...], "nextLink": "..."}``), pages with ``nextLink`` (fetched with GET, as
the SDK does), and accepts only the bearer token it was given. HTTPS because azure-core refuses
to send a bearer token over plain HTTP; the certificate is self-signed, made at start.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
import ssl
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def write_self_signed_certificate(
    directory: Path, dns_names: Sequence[str] = ()
) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 (and ``dns_names``) and its key, as PEM files in
    ``directory``. With ``dns_names`` it can stand in for those hosts behind a tunnel, verified
    against itself (REQUESTS_CA_BUNDLE naming the certificate file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                    *(x509.DNSName(name) for name in dns_names),
                ]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "arm-cert.pem", directory / "arm-key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


class _HandshakeInWorkerServer(ThreadingHTTPServer):
    """HTTPS whose TLS handshakes run on each connection's own thread. Wrapping the listening
    socket instead makes ``accept`` shake hands one connection at a time, so 16 writes opening
    connections at once time out (the app's 1 s connect timeout) on a busy machine: a fault of
    the stand-in, not of what it stands in for. For the same reason a real listen backlog:
    socketserver's 5 dropped the connections three app instances open at once through the
    Cosmos DB proxy (the SYN is resent after 1 s, the app's connect timeout), an outage that
    Cosmos DB's gateway would not have."""

    daemon_threads = True
    request_queue_size = 1024

    def __init__(self, handler: type[BaseHTTPRequestHandler], context: ssl.SSLContext) -> None:
        self.context = context
        super().__init__(("127.0.0.1", 0), handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        try:
            wrapped = self.context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        # wrap_socket moves the connection's descriptor into ``wrapped``: the ``request`` that
        # socketserver shuts down and closes afterwards is an empty shell. Closed here, or each
        # connection was an unclosed-SSLSocket ResourceWarning (276 in a run under -X dev).
        try:
            super().finish_request(wrapped, client_address)
        finally:
            self.shutdown_request(wrapped)


class LocalHttpsServer:
    """A threaded HTTPS server on a free loopback port with a self-signed certificate (made in
    ``directory``), serving the handler class a subclass builds in ``_handler_class``."""

    def __init__(self, directory: Path, dns_names: Sequence[str] = ()) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.certificate, key = write_self_signed_certificate(directory, dns_names)
        context.load_cert_chain(self.certificate, key)
        self._server = _HandshakeInWorkerServer(self._handler_class(), context)
        # Polled often: stop() waits for the next poll, 0.5 s by default.
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def endpoint(self) -> str:
        return f"https://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        raise NotImplementedError


@dataclass(frozen=True)
class SeenRequest:
    method: str
    path: str
    query: dict[str, list[str]]
    authorization: str | None


# The bearer token the stand-in takes (tests give the app a credential that returns it).
TOKEN = "stand-in-bearer-token"


class ListEventsStandIn(LocalHttpsServer):
    """``histories`` maps a webhook's listEvents path (from /subscriptions/...) to its events;
    each answer holds at most ``page_size`` of them."""

    def __init__(
        self, directory: Path, token: str, page_size: int = 2, dns_names: Sequence[str] = ()
    ) -> None:
        self.histories: dict[str, list[dict[str, Any]]] = {}
        # A path's answer as given, on every call (a malformed one, or one that links to itself).
        self.verbatim: dict[str, Any] = {}
        # A path's error answer (status, ARM's error body), on every call: a role not (yet)
        # assigned (403 AuthorizationFailed), a webhook or registry gone (404 ResourceNotFound).
        self.failing: dict[str, tuple[int, dict[str, Any]]] = {}
        # How many of the next requests get ARM's throttling answer (429, Retry-After: 1 s).
        self.throttled_requests = 0
        self.requests: list[SeenRequest] = []
        self.token = token
        self.page_size = page_size
        super().__init__(directory, dns_names)

    def _answer(self, method: str, path: str, query: dict[str, list[str]]) -> tuple[int, Any]:
        if "api-version" not in query:
            return 400, {"error": {"code": "MissingApiVersionParameter", "message": "..."}}
        if path in self.failing:
            return self.failing[path]
        if path in self.verbatim:
            return 200, self.verbatim[path]
        events = self.histories.get(path)
        if events is None or method != ("POST" if "skip" not in query else "GET"):
            return 404, {"error": {"code": "NotFound", "message": f"{method} {path}"}}
        start = int(query.get("skip", ["0"])[0])
        body: dict[str, Any] = {"value": events[start : start + self.page_size]}
        if start + self.page_size < len(events):
            body["nextLink"] = f"{self.endpoint}{path}?skip={start + self.page_size}"
        return 200, body

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def _handle(self) -> None:
                url = urlsplit(self.path)
                query = parse_qs(url.query)
                authorization = self.headers.get("Authorization")
                stand_in.requests.append(SeenRequest(self.command, url.path, query, authorization))
                length = int(self.headers.get("Content-Length") or 0)
                self.rfile.read(length)
                extra_headers = {}
                if authorization != f"Bearer {stand_in.token}":
                    status, body = 401, {"error": {"code": "InvalidAuthenticationToken"}}
                elif stand_in.throttled_requests > 0:
                    stand_in.throttled_requests -= 1
                    status, body = 429, {"error": {"code": "TooManyRequests", "message": "..."}}
                    extra_headers["Retry-After"] = "1"
                else:
                    status, body = stand_in._answer(self.command, url.path, query)
                data = json.dumps(body).encode()
                self.send_response(status)
                for name, value in extra_headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _handle

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler
