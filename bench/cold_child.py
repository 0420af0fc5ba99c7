"""One cold start, run by path in a new interpreter: ``python bench/cold_child.py MODE SPEC``.

It imports nothing before the clock starts but ``time``, and nothing it does not measure, so
the parent (bench/cold_start.py) can split the run into interpreter start, imports and first
event. ``time.perf_counter`` is CLOCK_MONOTONIC on Linux, so its readings compare across
processes. It prints one JSON line: the readings, its CPU time so far and the answer's status.

MODE ``app``: what the Functions worker does: import ``function_app``, build a
``func.HttpRequest`` for a push and call the registered function (settings from the
environment, client created on first use, one write).
MODE ``floor``: a bare process that imports azure-functions, azure-cosmos and pydantic, creates
a ``CosmosClient`` with the app's client options on ``RequestsTransport(use_env_settings=False)``
(the fastest sync configuration, bench/floors.py) and performs one direct ``create_item``.
"""
# ruff: noqa: E402  (the imports after the first clock reading are what is measured)

import time

started = time.perf_counter()

import json
import sys


def _app(spec: dict[str, str]) -> tuple[float, int]:
    # function_app first, so that its -X importtime tree holds everything it needs.
    import function_app  # noqa: I001
    import azure.functions as func

    imported = time.perf_counter()
    functions = function_app.app.get_functions()
    [function] = [f for f in functions if f.get_function_name() == "acr_webhook"]
    request = func.HttpRequest(
        "POST",
        spec["url"],
        headers={"content-type": "application/json"},
        params={},
        body=spec["body"].encode(),
    )
    response = function.get_user_function()(request)
    return imported, int(response.status_code)


def _floor(spec: dict[str, object]) -> tuple[float, int]:
    import warnings

    import azure.functions
    import pydantic
    from azure.core.pipeline.transport import RequestsTransport
    from azure.cosmos import CosmosClient

    imported = time.perf_counter()
    assert azure.functions and pydantic  # imported for their cost alone
    # The app silences this warning for loopback hosts; printing it would cost the floor time.
    warnings.simplefilter("ignore")
    options = spec["client_options"]
    assert isinstance(options, dict)
    client = CosmosClient(
        str(spec["endpoint"]),
        credential=str(spec["key"]),
        connection_verify=False,
        transport=RequestsTransport(use_env_settings=False),
        **options,
    )
    database = client.get_database_client(str(spec["database"]))
    container = database.get_container_client(str(spec["container"]))
    document = spec["document"]
    assert isinstance(document, dict)
    container.create_item(document)
    return imported, 201


def main() -> None:
    mode, spec = sys.argv[1], json.loads(sys.argv[2])
    imported, status = _app(spec) if mode == "app" else _floor(spec)
    answered, cpu = time.perf_counter(), time.process_time()
    readings = {
        "started": started,
        "imported": imported,
        "answered": answered,
        "cpu": cpu,
        "status": status,
    }
    print(json.dumps(readings), flush=True)


if __name__ == "__main__":
    main()
