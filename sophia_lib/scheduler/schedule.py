"""``schedule.yaml``: the jobs, validated once at load with errors that name the job and the key.

::

    jobs:
      refresh:
        notebook: ../notebooks/pipelines/refresh.ipynb   # relative to this file
        every: 15m                                       # or cron: "0 7 * * MON" (scheduler.timezone)
        timeout: 10m
        retries: 2
        retry_backoff: 1m                                # doubles after each failed attempt
        audience: super_user                             # the role the job runs as
        parameters: {sync: true}
        depends_on: []
        enabled: true
"""

from __future__ import annotations

import difflib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any

import yaml
from croniter import croniter
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from sophia_lib.config import SophiaConfig, yaml_problem
from sophia_lib.config.typing import TRole
from sophia_lib.scheduler.errors import ScheduleError, UnknownJobError

REPO_SCHEDULE = Path(__file__).resolve().parents[2] / "pipelines" / "schedule.yaml"
JOB_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
_DURATION = re.compile(r"^(?:(?P<d>\d+)d)?(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+)s)?$")
DURATION_HELP = "write a duration such as 90s, 15m, 1h30m or 2d (or a number of seconds)"


def parse_duration(value: object) -> timedelta:
    """``15m``, ``1h30m``, ``90s``, ``2d``, a number of seconds, or a timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return timedelta(seconds=value)
    if isinstance(value, str):
        text = value.replace(" ", "").lower()
        match = _DURATION.match(text)
        if text and match:
            parts = {k: int(v or 0) for k, v in match.groupdict().items()}
            return timedelta(days=parts["d"], hours=parts["h"], minutes=parts["m"], seconds=parts["s"])
        try:
            return timedelta(seconds=float(text))
        except ValueError:
            pass
    raise ValueError(f"not a duration: {value!r}; {DURATION_HELP}")


TDuration = Annotated[timedelta, BeforeValidator(parse_duration)]


class JobSpec(BaseModel):
    """One job of the schedule. Its name is its key under ``jobs:``."""

    model_config = ConfigDict(extra="forbid", validate_default=True)

    name: str = Field(default="", exclude=True, description="Set from the key under jobs:.")
    description: str = Field(default="", description="One line shown by `sophia jobs list`.")
    notebook: Path = Field(description="The notebook to run, relative to schedule.yaml's folder.")
    cron: str | None = Field(default=None, description="Cron expression read in scheduler.timezone.")
    every: TDuration | None = Field(default=None, description="Interval between runs, e.g. 15m.")
    parameters: dict[str, Any] = Field(default_factory=dict, description="Papermill parameters.")
    audience: TRole = Field(default="analyst", description="The role the job runs as.")
    timeout: TDuration = Field(default=timedelta(minutes=30), description="Hard limit of one attempt.")
    retries: int = Field(default=0, ge=0, le=10, description="Attempts after a failed one.")
    retry_backoff: TDuration = Field(default=timedelta(minutes=1), description="Wait before the first retry; "
                                     "doubles after each failed attempt (at most an hour).")
    depends_on: list[str] = Field(default_factory=list, description="Jobs whose latest run must have succeeded.")
    enabled: bool = Field(default=True, description="Scheduled; a disabled job can still be run by hand.")

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str | None) -> str | None:
        if value is not None and not croniter.is_valid(value):
            raise ValueError(f"invalid cron expression {value!r}; five fields: minute hour day-of-month month "
                             "day-of-week, e.g. '0 7 * * MON' (Mondays 07:00) or '*/15 * * * *'")
        return value

    @field_validator("every", "timeout", "retry_backoff")
    @classmethod
    def _positive(cls, value: timedelta | None) -> timedelta | None:
        if value is not None and value.total_seconds() < 1:
            raise ValueError(f"must be at least 1 second; {DURATION_HELP}")
        return value

    @field_validator("parameters")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            json.dumps(value)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"parameters must be plain values (strings, numbers, lists, mappings): {exc}") from None
        bad = [k for k in value if not k.isidentifier()]
        if bad:
            raise ValueError(f"parameter names must be Python identifiers; got {', '.join(map(repr, bad))}")
        return value

    @model_validator(mode="after")
    def _one_trigger(self) -> JobSpec:
        if (self.cron is None) == (self.every is None):
            raise ValueError("give exactly one of cron: (e.g. '0 7 * * MON') or every: (e.g. 15m)")
        return self

    @property
    def trigger(self) -> str:
        """The trigger as written, for listings: ``cron 0 7 * * MON`` or ``every 15m``."""
        if self.cron is not None:
            return f"cron {self.cron}"
        return f"every {format_duration(self.every or timedelta())}"


class Schedule(BaseModel):
    """All jobs, by name. ``path`` is the file they came from (None when built in code)."""

    model_config = ConfigDict(extra="forbid")

    jobs: dict[str, JobSpec] = Field(default_factory=dict)
    path: Path | None = Field(default=None, exclude=True)

    @model_validator(mode="before")
    @classmethod
    def _no_name_key(cls, data: Any) -> Any:
        if isinstance(data, dict) and isinstance(data.get("jobs"), dict):
            for job, body in data["jobs"].items():
                if isinstance(body, dict) and "name" in body:
                    raise ValueError(f"job {job!r}: remove 'name:' — a job's name is its key under jobs:")
        return data

    @model_validator(mode="after")
    def _names(self) -> Schedule:
        for name, job in self.jobs.items():
            job.name = name
        return self

    def job(self, name: str) -> JobSpec:
        """The job called ``name``; an unknown name lists the valid ones and the closest match."""
        if name in self.jobs:
            return self.jobs[name]
        guess = difflib.get_close_matches(name, list(self.jobs), n=1)
        hint = f" — did you mean {guess[0]!r}?" if guess else "."
        where = f" in {self.path}" if self.path else ""
        raise UnknownJobError(f"no job {name!r}{where}{hint} Jobs: {', '.join(self.jobs) or 'none'}.",
                              fix="run `sophia jobs list` for the names")

    def enabled(self) -> list[JobSpec]:
        return [job for job in self.jobs.values() if job.enabled]

    def in_dependency_order(self, names: list[str]) -> list[str]:
        """``names`` ordered so that every job comes after the jobs it depends on (stable otherwise)."""
        ordered: list[str] = []

        def visit(name: str) -> None:
            if name in ordered:
                return
            for dep in self.jobs[name].depends_on:
                if dep in names:
                    visit(dep)
            ordered.append(name)

        for name in names:
            visit(name)
        return ordered


def format_duration(value: timedelta) -> str:
    seconds = int(value.total_seconds())
    out = ""
    for unit, span in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= span:
            out += f"{seconds // span}{unit}"
            seconds %= span
    return out or "0s"


def schedule_path(config: SophiaConfig) -> Path:
    return config.scheduler.schedule or REPO_SCHEDULE


def load_schedule(config: SophiaConfig, path: Path | None = None, *, check_notebooks: bool = True) -> Schedule:
    """Read and validate the schedule: types, cron expressions, durations, dependencies, and (for enabled
    jobs) that each notebook exists. Raises :class:`ScheduleError` naming the job, the key and the fix."""
    path = path or schedule_path(config)
    if not path.is_file():
        raise ScheduleError(f"the schedule file {path} does not exist.",
                            fix="create it (see docs/scheduling.md) or set scheduler.schedule in sophia.yaml")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ScheduleError(f"{path} is not valid YAML{yaml_problem(exc)}.",
                            fix="fix the YAML syntax there (indentation, a missing ':' or an unclosed quote)") from None
    if not isinstance(data, dict):
        raise ScheduleError(f"{path} must be a mapping with a 'jobs:' key, not a {type(data).__name__}.",
                            fix="start the file with 'jobs:'")
    try:
        schedule = Schedule(**data)
    except ValidationError as exc:
        raise ScheduleError(_explain(exc, path), fix=f"correct the keys named above in {path} "
                            "(docs/scheduling.md lists every key)") from None
    except TypeError as exc:
        raise ScheduleError(f"{path}: {exc}.", fix="start the file with 'jobs:'") from None
    schedule.path = path
    for job in schedule.jobs.values():
        if not job.notebook.is_absolute():
            job.notebook = (path.parent / job.notebook).resolve()
    check_schedule(schedule, check_notebooks=check_notebooks)
    return schedule


def check_schedule(schedule: Schedule, *, check_notebooks: bool = True) -> None:
    """The rules that span jobs: names, dependencies (known, enabled, no cycle), notebooks of enabled jobs."""
    source = str(schedule.path) if schedule.path else "the schedule"
    problems: list[str] = []
    for name, job in schedule.jobs.items():
        if not JOB_NAME.match(name):
            problems.append(f"- job {name!r}: job names are lowercase letters, digits and '_' starting with a "
                            "letter (they name folders and locks).\n  fix: rename it")
        for dep in job.depends_on:
            if dep == name:
                problems.append(f"- job {name!r}, key 'depends_on': a job cannot depend on itself.\n"
                                f"  fix: remove {dep!r} from its depends_on")
            elif dep not in schedule.jobs:
                guess = difflib.get_close_matches(dep, list(schedule.jobs), n=1)
                hint = f" — did you mean {guess[0]!r}?" if guess else ""
                problems.append(f"- job {name!r}, key 'depends_on': unknown job {dep!r}{hint}.\n"
                                f"  fix: name one of: {', '.join(schedule.jobs)}")
            elif job.enabled and not schedule.jobs[dep].enabled:
                problems.append(f"- job {name!r}, key 'depends_on': it depends on {dep!r}, which is disabled, so "
                                f"it could never run.\n  fix: enable {dep!r} or disable {name!r}")
        if check_notebooks and job.enabled and not job.notebook.is_file():
            problems.append(f"- job {name!r}, key 'notebook': {job.notebook} does not exist.\n"
                            f"  fix: create the notebook, correct the path (relative to {source}'s folder), "
                            "or set enabled: false")
    cycle = _find_cycle(schedule)
    if cycle:
        problems.append(f"- key 'depends_on': the jobs {' → '.join(cycle)} depend on each other in a cycle.\n"
                        "  fix: remove one of those dependencies")
    if problems:
        raise ScheduleError(f"invalid schedule {source}:\n" + "\n".join(problems))


def _find_cycle(schedule: Schedule) -> list[str] | None:
    state: dict[str, int] = {}  # 1: on the path, 2: done

    def visit(name: str, path: list[str]) -> list[str] | None:
        state[name] = 1
        for dep in schedule.jobs[name].depends_on:
            if dep not in schedule.jobs or dep == name:
                continue
            if state.get(dep) == 1:
                return [*path[path.index(dep):], dep] if dep in path else [name, dep]
            if dep not in state:
                found = visit(dep, [*path, dep])
                if found:
                    return found
        state[name] = 2
        return None

    for name in schedule.jobs:
        if name not in state:
            found = visit(name, [name])
            if found:
                return found
    return None


def _explain(exc: ValidationError, path: Path) -> str:
    lines = [f"invalid schedule {path}:"]
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        message = err["msg"].removeprefix("Value error, ")
        if len(loc) >= 2 and loc[0] == "jobs":
            where = f"job {loc[1]!r}" + (f", key {'.'.join(loc[2:])!r}" if len(loc) > 2 else "")
        else:
            where = f"key {'.'.join(loc)!r}" if loc else "(top level)"
        if err["type"] == "extra_forbidden" and len(loc) == 3:
            guess = difflib.get_close_matches(loc[-1], [f for f in JobSpec.model_fields if f != "name"], n=1)
            hint = f" — did you mean {guess[0]!r}?" if guess else ""
            valid = ", ".join(f for f in JobSpec.model_fields if f != "name")
            lines.append(f"- {where}: unknown key{hint or '.'} Valid keys: {valid}.")
            continue
        if err["type"] == "missing":
            lines.append(f"- {where}: required.")
            continue
        shown = "" if err["type"] == "model_type" or len(loc) < 3 else f" = {err.get('input')!r}"
        lines.append(f"- {where}{shown}: {message}.")
    return "\n".join(lines)
