"""ACR webhook delivery history entries, shaped like the REST API spec's WebhookListEvents
example (Azure/azure-rest-api-specs, containerregistry resource-manager examples), which is
also what ``az acr webhook list-events --output json`` prints (the ``value`` items):

    {"id": "...",
     "eventRequestMessage": {"content": {"id", "timestamp", "action", "target": {...},
                                         "request": {...}, "actor": {}, "source": {...}},
                             "headers": {"Content-Type", "Content-Length", "Authorization"},
                             "method": "POST", "requestUri": "http://myservice.com",
                             "version": "1.1"},
     "eventResponseMessage": {"headers": {...}, "statusCode": "200", "version": "1.1"}}

The request parts here carry a recognisable ``?code=`` and secret header, so tests can prove
that neither ever reaches a log, a document or an output line.
"""

from __future__ import annotations

import copy
from typing import Any

FUNCTION_KEY_IN_URI = "history-function-key-must-not-leak"
SECRET_IN_HEADER = "history-shared-secret-must-not-leak"
LEAKABLE = (FUNCTION_KEY_IN_URI, SECRET_IN_HEADER)


def history_entry(content: Any, status_code: str = "504") -> dict[str, Any]:
    """One delivery as ACR keeps it: the payload it posted, the request around it, and the
    answer it got (``statusCode`` is a string; a timed-out delivery shows 504)."""
    entry_id = content.get("id") if isinstance(content, dict) else None
    return {
        "id": entry_id if isinstance(entry_id, str) else "entry-without-content-id",
        "eventRequestMessage": {
            "content": copy.deepcopy(content),
            "headers": {
                "Content-Type": "application/json",
                "Content-Length": "719",
                "Authorization": f"Bearer {SECRET_IN_HEADER}",
            },
            "method": "POST",
            "requestUri": f"https://app.example/api/acr/webhook?code={FUNCTION_KEY_IN_URI}",
            "version": "1.1",
        },
        "eventResponseMessage": {
            "headers": {"Content-Length": "0"},
            "statusCode": status_code,
            "version": "1.1",
        },
    }
