"""The function app's registered functions, indexed once (for the local host)."""

from __future__ import annotations

import functools

import azure.functions as func
from azure.functions.decorators.function_app import Function


@functools.cache  # the SDK's get_functions() refuses a second call on the same app
def indexed_functions(app: func.FunctionApp) -> list[Function]:
    return list(app.get_functions())
