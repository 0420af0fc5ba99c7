"""Settings shared by the property-based tests: the same examples on every run, CI included
(``derandomize``), nothing kept between runs, and no deadline or slowness check, which a
loaded 2-core machine would fail for no fault of the code. Each test sets its own count."""

from __future__ import annotations

from hypothesis import HealthCheck, settings

DETERMINISTIC = settings(
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
