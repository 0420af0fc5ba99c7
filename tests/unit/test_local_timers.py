"""The local host's timer triggers: NCRONTAB schedules, %SETTING% names, runs and failures."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime

import azure.functions as func
import pytest

import function_app
from acr_webhook.config import Settings
from acr_webhook.local.timers import (
    ScheduleError,
    next_occurrence,
    resolve_schedule,
    start_timer_runners,
    timer_functions,
)
from tests.support.fakes import FakeEventRepository

AT = datetime(2026, 11, 21, 12, 3, 7, tzinfo=UTC)  # a Saturday
RUN_WITHIN_S = 5.0  # an every-second schedule must have run by then


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        ("0 */5 * * * *", datetime(2026, 11, 21, 12, 5, 0, tzinfo=UTC)),
        ("*/10 * * * * *", datetime(2026, 11, 21, 12, 3, 10, tzinfo=UTC)),
        ("7 3 12 * * *", datetime(2026, 11, 22, 12, 3, 7, tzinfo=UTC)),  # strictly after
        ("0 30 9 * * 1-5", datetime(2026, 11, 23, 9, 30, 0, tzinfo=UTC)),  # Monday
    ],
)
def test_six_field_schedules_count_seconds_first(schedule: str, expected: datetime) -> None:
    assert next_occurrence(schedule, AT) == expected


@pytest.mark.parametrize("schedule", ["*/5 * * * *", "61 * * * * *", "00:05:00", ""])
def test_anything_but_six_valid_fields_is_refused(schedule: str) -> None:
    with pytest.raises(ScheduleError, match="six fields, seconds first"):
        next_occurrence(schedule, AT)


def test_settings_in_a_schedule_are_resolved_and_a_missing_one_is_named() -> None:
    values = {"RECONCILE_SCHEDULE": "0 */5 * * * *"}
    assert resolve_schedule("%RECONCILE_SCHEDULE%", values) == "0 */5 * * * *"
    assert resolve_schedule("0 0 * * * *", {}) == "0 0 * * * *"
    with pytest.raises(ScheduleError, match="setting RECONCILE_SCHEDULE is not set"):
        resolve_schedule("%RECONCILE_SCHEDULE%", {})


def test_timers_run_on_schedule_and_a_failing_run_does_not_stop_them(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = func.FunctionApp()
    runs: list[bool] = []
    ran_twice = threading.Event()

    @app.timer_trigger(schedule="%EVERY_SECOND%", arg_name="timer")
    def failing_every_second(timer: func.TimerRequest) -> None:
        runs.append(timer.past_due)
        if len(runs) >= 2:
            ran_twice.set()
        raise RuntimeError("this run fails")

    @app.timer_trigger(schedule="%NOT_SET%", arg_name="timer")
    def never(timer: func.TimerRequest) -> None:
        raise AssertionError("a timer without its setting must not run")

    @app.timer_trigger(schedule="0 */5 * * *", arg_name="timer")
    def five_fields(timer: func.TimerRequest) -> None:
        raise AssertionError("a five-field schedule must not run")

    runners = start_timer_runners(app, {"EVERY_SECOND": "* * * * * *"})
    try:
        assert [runner.function.name for runner in runners] == ["failing_every_second"]
        assert ran_twice.wait(RUN_WITHIN_S)
    finally:
        for runner in runners:
            runner.stop()
    assert runs[:2] == [False, False]
    assert "timer trigger never not started: setting NOT_SET is not set" in caplog.text
    assert "timer trigger five_fields not started: '0 */5 * * *' is not" in caplog.text
    assert "timer function failing_every_second failed; next run on schedule" in caplog.text


def test_the_apps_reconcile_timer_runs_on_the_local_host(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    [reconcile] = [t for t in timer_functions(function_app.app) if t.name == "reconcile_history"]
    assert (reconcile.schedule, reconcile.run_on_startup) == ("%RECONCILE_SCHEDULE%", False)

    ran = threading.Event()

    def not_configured() -> Settings:
        ran.set()
        return Settings("https://127.0.0.1:1/", None, "acr", "events", None)

    repository = FakeEventRepository()
    monkeypatch.setattr(function_app, "settings", not_configured)
    monkeypatch.setattr(function_app, "event_repository", lambda: repository)
    monkeypatch.setattr(function_app, "webhook_history", lambda: None)
    runners = start_timer_runners(function_app.app, {"RECONCILE_SCHEDULE": "* * * * * *"})
    try:
        assert "reconcile_history" in [runner.function.name for runner in runners]
        assert ran.wait(RUN_WITHIN_S)
    finally:
        for runner in runners:
            runner.stop()
    assert "reconcile is not configured (ACR_REGISTRY_ID is not set)" in caplog.text
    assert repository.add_calls == 0
