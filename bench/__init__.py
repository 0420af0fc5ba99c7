"""Benchmarks for issue 7: cold start, per-event CPU, throughput and latency, request units.

Run them all with ``./scripts/bench``; it prints the figures and rewrites docs/performance.md.
Not collected by pytest (testpaths = tests): these print numbers, they assert nothing timed.
"""
