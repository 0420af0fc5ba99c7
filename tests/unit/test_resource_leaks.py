"""What the product's own code paths leave open: threads and descriptors a failed start leaves
behind, found by running the suite and the commands under ``python -X dev`` (ResourceWarning)."""

from __future__ import annotations

import gc
import socket
import threading
from collections.abc import Iterator
from typing import cast

import pytest

from acr_webhook.local.host import CannotListenError, LocalFunctionsHost, LocalHttpServer
from tests.support.resources import open_pipes, open_sockets


@pytest.fixture
def no_cyclic_collection() -> Iterator[None]:
    """What a failed constructor leaves sits in reference cycles (waitress's socket map holds
    its dispatchers): with the collector off, it is still open when the test looks, whenever the
    collector would have run."""
    gc.collect()
    gc.disable()
    yield
    gc.enable()
    gc.collect()


def test_a_port_the_local_host_cannot_listen_on_leaves_no_thread_pipe_or_socket_open(
    no_cyclic_collection: None,
) -> None:
    """waitress made its listening socket before the bind failed: closing the trigger alone
    (the only dispatcher without a task_dispatcher) would leave it open."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        threads_before = set(threading.enumerate())
        pipes_before = open_pipes()
        sockets_before = open_sockets()
        with pytest.raises(CannotListenError):
            # The host is never called: the server is refused before it serves anything.
            LocalHttpServer(cast(LocalFunctionsHost, None), "127.0.0.1", port)
        left_running = [
            thread.name
            for thread in set(threading.enumerate()) - threads_before
            if thread.name.startswith("waitress")
        ]
        pipes_left = open_pipes() - pipes_before
        sockets_left = open_sockets() - sockets_before
    assert (left_running, pipes_left, sockets_left) == ([], set(), set())
