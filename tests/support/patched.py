"""``python -m tests.support.patched MODULE.NAME=SECONDS ... -- ARGS``: ``python -m acr_webhook
ARGS`` with module constants set first. For the waits no setting shortens (the local queue
trigger's 30 s lease, redrive's 60 s lease), so that a test can see them end; the code that
reads them runs unchanged."""

from __future__ import annotations

import importlib
import sys

from acr_webhook.__main__ import main


def run(argv: list[str]) -> int:
    split = argv.index("--")
    for assignment in argv[:split]:
        target, value = assignment.split("=", 1)
        module, name = target.rsplit(".", 1)
        imported = importlib.import_module(module)
        assert hasattr(imported, name), f"{module} has no {name}"
        setattr(imported, name, int(value) if value.isdigit() else float(value))
    return main(argv[split + 1 :])


if __name__ == "__main__":
    sys.exit(run(sys.argv[1:]))
