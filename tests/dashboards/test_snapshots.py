"""The snapshot store: a render becomes current atomically, readers never see half of one, a page that
failed is served from the render before, and the scheduler hook renders with the service's audience."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from sophia_lib.config import SophiaConfig
from sophia_lib.dashboards import snapshots
from sophia_lib.dashboards.scopes import Scope
from sophia_lib.dashboards.snapshots import ServiceAudience, SnapshotStore

SCOPE = Scope("executive_viewer|", "executive_viewer", ("sophia-executives",))
SLUGS = [f"d{i}" for i in range(20)]


def _render(store: SnapshotStore, n: int, failed: tuple[str, ...] = ()) -> str:
    staging = store.stage()
    pages = {}
    for slug in SLUGS:
        key = f"{SCOPE.slug}/{slug}"
        if slug in failed:
            pages[key] = {"scope": SCOPE.key, "slug": slug, "status": "failed", "error": "boom"}
            continue
        (staging / SCOPE.slug).mkdir(exist_ok=True)
        (staging / SCOPE.slug / f"{slug}.html").write_text(f"render {n}")
        pages[key] = {"scope": SCOPE.key, "slug": slug, "status": "ok", "file": f"{key}.html"}
    return store.commit(staging, {"render_id": f"snap{n:04d}", "snapshot_id": f"s{n}", "as_of": f"2026-01-01T00:"
                                  f"{n % 60:02d}:00+00:00", "rendered_at": "x", "pages": pages})


def test_readers_never_see_half_a_render(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path, keep=3)
    _render(store, 0)
    stop = threading.Event()
    seen: list[set[str]] = []
    errors: list[BaseException] = []

    def reader() -> None:
        reading = SnapshotStore(tmp_path, keep=3)
        while not stop.is_set():
            try:
                texts = set()
                render = reading.current_id()
                for slug in SLUGS:
                    page = reading.page(SCOPE, slug)
                    if page is not None and page.render_id == render:
                        texts.add(Path(page.path).read_text())
                seen.append(texts)
            except FileNotFoundError:  # a render pruned under a slow reader is retried, never half-read
                continue
            except BaseException as exc:
                errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for n in range(1, 30):
        _render(store, n)
    stop.set()
    for t in threads:
        t.join()
    assert not errors
    assert seen and all(len(texts) <= 1 for texts in seen), "a reader saw pages of two renders at once"
    assert len(store.render_ids()) == 3  # older renders pruned


def test_a_failed_page_is_served_from_the_render_before(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    _render(store, 1)
    _render(store, 2, failed=("d3",))
    page = store.page(SCOPE, "d3")
    assert page is not None and page.stale and Path(page.path).read_text() == "render 1"
    fresh = store.page(SCOPE, "d4")
    assert fresh is not None and not fresh.stale and Path(fresh.path).read_text() == "render 2"
    assert store.failure(SCOPE, "d3")["error"] == "boom"


def test_viewers_scopes_are_remembered_once(tmp_path: Path) -> None:
    store = SnapshotStore(tmp_path)
    assert store.record_viewer(["sophia-executives", "sophia-region-emea"])
    assert not store.record_viewer(["sophia-region-emea", "sophia-executives"])
    assert json.loads((tmp_path / "viewers.json").read_text()) == [["sophia-executives", "sophia-region-emea"]]


def test_the_refresh_hook_renders_the_new_snapshot_as_the_service(monkeypatch, tmp_path: Path) -> None:
    calls = {}

    def fake_render_all(config, auth, *, snapshot=None, **_):
        calls.update(auth=auth, snapshot=snapshot)
        return snapshots.RenderReport("r1", snapshot or "", {"a/b": {"status": "ok"}}, 1.0)

    monkeypatch.setattr(snapshots, "render_all", fake_render_all)
    monkeypatch.setenv("JUPYTERHUB_API_TOKEN", "service-token")
    config = SophiaConfig(var_dir=tmp_path)
    summary = snapshots.after_refresh(config, SimpleNamespace(snapshot=SimpleNamespace(id="20260101_000000")))
    assert calls["snapshot"] == "20260101_000000" and "1/1 page(s)" in summary
    assert isinstance(calls["auth"], ServiceAudience) and calls["auth"].token == "service-token"
    assert calls["auth"].env(SCOPE)["SOPHIA_QUERY_AUDIENCE"] == "sophia-executives"
    monkeypatch.delenv("JUPYTERHUB_API_TOKEN")
    calls.clear()  # `sophia refresh` by hand: nothing to render as, so it says so and renders nothing
    assert snapshots.after_refresh(config, SimpleNamespace(snapshot=None)).startswith("skipped: no service token")
    assert calls == {}
    with pytest.raises(Exception, match="no service token"):
        snapshots.service_auth(config)
