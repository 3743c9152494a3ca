"""One refresh, in this process: sync every source → publish a snapshot with the transforms → hooks.

The ``refresh`` job's notebook (``notebooks/pipelines/refresh.ipynb``) and ``sophia refresh`` call
:func:`run_refresh`. A stage's failure does not hide the others' work: when one source fails to sync, the
others' new data is still published (the failed source keeps its last good data in the raw store),
and the after-refresh hooks (:data:`~sophia_lib.scheduler.hooks.AFTER_REFRESH`: dashboards' snapshots,
alerts) still run on the new snapshot. The refresh then *fails*, naming every failed stage
(:meth:`RefreshResult.raise_for_errors`), so the job run is recorded failed and retried. Hooks run only
after a successful publish: there is no new snapshot for them otherwise.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from sophia_lib.config import SophiaConfig, load_config
from sophia_lib.scheduler.errors import RefreshError
from sophia_lib.scheduler.hooks import AFTER_REFRESH, THook, hook_name, resolve

if TYPE_CHECKING:
    from sophia_lib.sync import SourceRunResult
    from sophia_lib.warehouse import SnapshotInfo

PUBLISH_TIMEOUT_S = 120.0


@dataclass
class RefreshResult:
    """What one refresh did, stage by stage (the hooks receive it too)."""

    started_at: datetime
    finished_at: datetime | None = None
    synced: bool = False
    sync: list[SourceRunResult] = field(default_factory=list)
    snapshot: SnapshotInfo | None = None
    build_steps: list[str] = field(default_factory=list)
    hooks: dict[str, str] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    timings_s: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.errors

    def report(self) -> str:
        """Human-readable lines: each stage, its duration and outcome."""
        lines = []
        if self.synced:
            failed = [r for r in self.sync if r.status == "failed"]
            rows = sum(r.total("rows_inserted") + r.total("rows_updated") + r.total("rows_deleted") for r in self.sync)
            lines.append(f"sync: {len(self.sync)} source(s), {len(self.sync) - len(failed)} succeeded, "
                         f"{len(failed)} failed, {rows} row(s) changed ({self.timings_s.get('sync', 0):.1f} s)")
            lines += [f"  {r.source}: {r.status}" + (f" — {r.error}" if r.error else "") for r in self.sync]
        else:
            lines.append("sync: skipped")
        if self.snapshot is not None:
            steps = ", ".join(self.build_steps) or "none"
            lines.append(f"publish: snapshot {self.snapshot.id} as of {self.snapshot.as_of:%Y-%m-%d %H:%M:%S} UTC, "
                         f"build steps: {steps} ({self.timings_s.get('publish', 0):.1f} s)")
        else:
            lines.append("publish: no snapshot published")
        if self.hooks:
            lines.append(f"after refresh ({self.timings_s.get('hooks', 0):.1f} s):")
            lines += [f"  {name}: {summary}" for name, summary in self.hooks.items()]
        elif self.snapshot is not None:
            lines.append("after refresh: no hooks registered")
        else:
            lines.append("after refresh: skipped (nothing published)")
        total = (self.finished_at - self.started_at).total_seconds() if self.finished_at else 0.0
        lines.append(f"refresh {'succeeded' if self.ok else 'FAILED'} in {total:.1f} s")
        lines += [f"  error: {e}" for e in self.errors]
        return "\n".join(lines)

    def raise_for_errors(self) -> None:
        if self.errors:
            raise RefreshError("the refresh failed:\n" + "\n".join(f"- {e}" for e in self.errors),
                               fix="see each stage's error above; `sophia sync` and `sophia warehouse publish` "
                                   "run the stages on their own")

    def to_dict(self) -> dict[str, Any]:
        return {
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat() if self.finished_at else None,
            "synced": self.synced, "sync": [r.to_dict() for r in self.sync],
            "snapshot": self.snapshot.to_dict() if self.snapshot else None, "build_steps": self.build_steps,
            "hooks": self.hooks, "errors": self.errors, "timings_s": self.timings_s, "ok": self.ok,
        }


def run_refresh(config: SophiaConfig | None = None, *, sync: bool = True, sources: list[str] | None = None,
            hooks: bool = True, after_refresh: list[THook] | None = None,
            publish_timeout: float = PUBLISH_TIMEOUT_S) -> RefreshResult:
    """Run one refresh. Never raises for a stage's failure: look at ``result.errors`` or call
    ``result.raise_for_errors()``. ``after_refresh`` replaces the registered hooks (tests, embedding)."""
    config = config or load_config()
    result = RefreshResult(started_at=datetime.now(UTC))
    if sync:
        _sync(config, sources, result)
    _publish(config, result, publish_timeout)
    if hooks and result.snapshot is not None:
        _hooks(config, AFTER_REFRESH if after_refresh is None else after_refresh, result)
    result.finished_at = datetime.now(UTC)
    return result


def _sync(config: SophiaConfig, sources: list[str] | None, result: RefreshResult) -> None:
    from sophia_lib.sync import run_sync

    started = time.perf_counter()
    result.synced = True
    try:
        result.sync = run_sync(config, sources=sources, progress=False)
    except Exception as exc:  # a bad source name or the app DB down: nothing synced
        result.errors.append(f"sync: {exc}")
    result.errors += [f"sync {r.source}: {r.error}" for r in result.sync if r.status == "failed"]
    result.timings_s["sync"] = round(time.perf_counter() - started, 3)


def _publish(config: SophiaConfig, result: RefreshResult, timeout: float) -> None:
    from sophia_lib.warehouse import build_all, open_warehouse, registered_builders

    started = time.perf_counter()
    try:
        importlib.import_module("sophia_lib.transforms")  # registers the transform chain as a build step
        result.build_steps = list(registered_builders())
        wh = open_warehouse(config)
        try:
            result.snapshot = wh.publish(build_all, timeout=timeout)
        finally:
            wh.close()
    except Exception as exc:
        result.errors.append(f"publish: {type(exc).__name__}: {exc}")
    result.timings_s["publish"] = round(time.perf_counter() - started, 3)


def _hooks(config: SophiaConfig, hooks: list[THook], result: RefreshResult) -> None:
    started = time.perf_counter()
    for hook in hooks:
        name = hook_name(hook)
        try:
            summary = resolve(hook)(config, result)
            result.hooks[name] = str(summary) if summary is not None else "done"
        except Exception as exc:
            result.hooks[name] = f"FAILED: {type(exc).__name__}: {exc}"
            result.errors.append(f"after-refresh hook {name}: {type(exc).__name__}: {exc}")
    result.timings_s["hooks"] = round(time.perf_counter() - started, 3)
