"""Benchmarks (issues 7, 13 and 14): per-event CPU and latency of the whole function path,
throughput in-process and through the local host, an Event Grid batch, cold start and request
units, each next to the bare SDK doing the same writes.

Run them all with ``./scripts/bench``; it prints the figures and rewrites docs/performance.md.
Not collected by pytest (testpaths = tests): these print numbers, they assert nothing timed.
"""
