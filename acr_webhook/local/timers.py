"""Timer triggers for the local host, on their NCRONTAB schedules, as the Functions runtime runs
them.

A schedule has six fields, seconds first (``0 */5 * * * *``: every five minutes), in UTC (the
runtime's default). ``%SETTING%`` is resolved from the settings values, as queue names are;
a function whose setting is missing or whose schedule is not six valid fields is skipped with a
warning, so the HTTP functions still serve. A run that raises is logged and the next one
happens on schedule; runs of one function never overlap.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import azure.functions as func
from azure.functions.decorators.timer import TimerTrigger
from azure.functions.timer import TimerRequest
from croniter import croniter

from acr_webhook.local.app_index import missing_settings, resolve_settings, triggered_by
from acr_webhook.local.background import BackgroundRunner

log = logging.getLogger(__name__)

NCRONTAB_FIELDS = 6


class ScheduleError(ValueError):
    """A schedule the runtime would refuse; the message says why."""


@dataclass(frozen=True)
class TimerFunction:
    name: str
    schedule: str  # as declared, possibly %SETTING%
    run_on_startup: bool
    call: Any


def timer_functions(app: func.FunctionApp) -> list[TimerFunction]:
    return [
        TimerFunction(
            name=str(function.get_function_name()),
            schedule=str(trigger.schedule),
            run_on_startup=bool(trigger.run_on_startup),
            call=function.get_user_function(),
        )
        for function, trigger in triggered_by(app, TimerTrigger)
    ]


def resolve_schedule(schedule: str, values: Mapping[str, str]) -> str:
    """``%SETTING%`` replaced by its value. Raises ScheduleError when a setting is missing."""
    missing = missing_settings(schedule, values)
    if missing:
        raise ScheduleError(f"setting {missing[0]} is not set")
    return resolve_settings(schedule, values)


def next_occurrence(schedule: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that the six-field NCRONTAB ``schedule`` names.

    Raises ScheduleError for anything but six valid fields (the runtime takes no other form
    on a Consumption or Flex Consumption plan).
    """
    if len(schedule.split()) != NCRONTAB_FIELDS or not croniter.is_valid(
        schedule, second_at_beginning=True
    ):
        raise ScheduleError(
            f"{schedule!r} is not an NCRONTAB schedule "
            "(six fields, seconds first, e.g. '0 */5 * * * *')"
        )
    return croniter(schedule, after.astimezone(UTC), second_at_beginning=True).get_next(datetime)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class TimerRunner(BackgroundRunner):
    """Calls one timer function at each time its schedule names, on a thread of its own."""

    def __init__(
        self,
        function: TimerFunction,
        schedule: str,
        clock: Callable[[], datetime] = _utc_now,
    ) -> None:
        next_occurrence(schedule, clock())  # refuse a bad schedule before starting
        super().__init__(f"timer-{function.name}")
        self.function = function
        self.schedule = schedule
        self._clock = clock

    def _run(self) -> None:
        if self.function.run_on_startup:
            self._call(past_due=False)
        due = next_occurrence(self.schedule, self._clock())
        while not self._stop.wait(max(0.0, (due - self._clock()).total_seconds())):
            now = self._clock()
            if now < due:
                continue  # woke early (clock adjustment): wait for the rest
            # Like the runtime: a run that comes more than a schedule step late is past due.
            self._call(past_due=next_occurrence(self.schedule, due) <= now)
            due = next_occurrence(self.schedule, self._clock())

    def _call(self, past_due: bool) -> None:
        try:
            self.function.call(TimerRequest(past_due=past_due))
        except Exception:
            log.exception("timer function %s failed; next run on schedule", self.function.name)


def start_timer_runners(app: func.FunctionApp, values: Mapping[str, str]) -> list[TimerRunner]:
    """A running runner per timer function whose schedule resolves; others are skipped with a
    warning that names the problem."""
    runners = []
    for function in timer_functions(app):
        try:
            runner = TimerRunner(function, resolve_schedule(function.schedule, values))
        except ScheduleError as problem:
            log.warning("timer trigger %s not started: %s", function.name, problem)
            continue
        runner.start()
        runners.append(runner)
    return runners
