"""Dashboards: time to first render of snapshot and live pages at 1, 20 and 80 concurrent viewers, memory
per live viewer, against plain Voila serving the same notebook (the peer) in the same run.

Everything is real and on loopback: the synced sandbox published through the transforms, a JupyterHub
(its Python proxy in front, as in production), the query service, the dashboards service with its Voila
child; viewers are signed in through the hub's OAuth flow. A bounded load generator (asyncio + httpx)
drives N concurrent viewers, each fetching the page ``--rounds`` times. "Live first render" is the time
until the Voila page has streamed completely (every cell executed, widgets' state embedded); "in the
browser" is chromium's time until the first plotly SVG is drawn.

Run alone (it starts a hub and kernels, so it is not in `make bench`'s default list):
``python -m benchmarks.bench_dashboards [--viewers 1,20,80] [--live-viewers 1,5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psutil

from benchmarks import Result

SNAPSHOT_P95_TARGET_S = 1.0
LIVE_P95_TARGET_S = 3.0
LIVE_MB_TARGET = 150.0
SLUG, NOTEBOOK = "sales", "sales.ipynb"


def _pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def _load(url: str, cookies: httpx.Cookies | None, viewers: int, rounds: int,
                headers: dict[str, str] | None = None) -> list[float]:
    timings: list[float] = []
    limits = httpx.Limits(max_connections=viewers, max_keepalive_connections=viewers)
    async with httpx.AsyncClient(cookies=cookies, headers=headers, timeout=300, limits=limits) as client:
        async def viewer() -> None:
            for _ in range(rounds):
                started = time.perf_counter()
                response = await client.get(url)
                assert response.status_code == 200, (response.status_code, response.text[:300])
                timings.append(time.perf_counter() - started)

        await asyncio.gather(*(viewer() for _ in range(viewers)))
    return timings


def _kernels_rss_mb(parent_pid: int) -> list[float]:
    try:
        children = psutil.Process(parent_pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [c.memory_info().rss / 2**20 for c in children if "ipykernel" in " ".join(c.cmdline())]


def _browser_first_render(url: str, cookies: httpx.Cookies, samples: int = 5) -> list[float]:
    from playwright.sync_api import sync_playwright

    args = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
            "--disable-sync", "--no-first-run"]
    out = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=args)
        context = browser.new_context()
        context.add_cookies([{"name": c.name, "value": c.value, "domain": "127.0.0.1", "path": c.path or "/"}
                             for c in cookies.jar])
        page = context.new_page()
        for _ in range(samples):
            started = time.perf_counter()
            page.goto(url)
            page.locator(".js-plotly-plot .main-svg").first.wait_for(timeout=120_000)
            out.append(time.perf_counter() - started)
        browser.close()
    return out


def run(args: argparse.Namespace) -> list[Result]:
    import sophia_lib.transforms
    from sophia_lib.dashboards.service import HubSettings, start_in_thread
    from sophia_lib.dashboards.snapshots import ServiceAudience, render_all
    from sophia_lib.query.identity import HubIdentity
    from sophia_lib.query.service import start_in_thread as start_query
    from sophia_lib.sandbox.background import free_port
    from sophia_lib.warehouse import open_warehouse

    # `make bench` passes only --size; `python -m benchmarks.bench_dashboards` can set the loads too
    args.viewers = getattr(args, "viewers", None) or [1, 20, 80]
    args.live_viewers = getattr(args, "live_viewers", None) or [1, 5]
    args.rounds = getattr(args, "rounds", None) or 10
    from tests.dashboards.conftest import DASH_TOKEN, QUERY_TOKEN, USERS, _wait_for_proxy, hub_config, login
    from tests.support.hub import start_hub
    from tests.support.raw import synced_sandbox

    results: list[Result] = []
    folder = Path(tempfile.mkdtemp(prefix="sophia-bench-dash-"))
    synced = synced_sandbox(Path(os.environ.get("SOPHIA_TEST_RAW_CACHE") or folder / "raw"))
    config = synced.copy_to(folder / "var")
    wh = open_warehouse(config)
    try:
        wh.publish(sophia_lib.transforms.build)
    finally:
        wh.close()
    dash_port = free_port()
    with start_hub(hub_config(dash_port)) as hub:
        for user, groups in USERS.items():
            hub.create_user(user, groups)
        identifier = HubIdentity(hub.api_url, QUERY_TOKEN, config.hub.group_roles, config.query.required_scope)
        query = start_query(config, identifier=identifier)
        auth = ServiceAudience(query.url, DASH_TOKEN)
        started = time.perf_counter()
        report = render_all(config, auth)
        print(f"   rendered {len(report.pages)} pages in {time.perf_counter() - started:.1f} s "
              f"({len(report.failed)} failed)", flush=True)
        prefix = "/services/dashboards/"
        config.dashboards.live_max_kernels = 3 * sum(args.live_viewers) + 10  # benchmark kernels are never closed
        service = start_in_thread(config, HubSettings(hub.api_url, DASH_TOKEN, prefix, "service-dashboards",
                                                      prefix + "oauth_callback"),
                                  port=dash_port, render_auth=auth, query_url=query.url)
        _wait_for_proxy(hub)
        peer = None
        try:
            client = login(hub, "vic")
            assert client.get(f"{hub.url}{prefix}").status_code == 200
            cookies = client.cookies
            snapshot_url = f"{hub.url}{prefix}d/{SLUG}/"
            for n in args.viewers:
                timings = asyncio.run(_load(snapshot_url, cookies, n, args.rounds))
                p50, p95 = _pct(timings, 0.5), _pct(timings, 0.95)
                print(f"   snapshot {n:>3} viewers: p50 {p50 * 1000:.0f} ms, p95 {p95 * 1000:.0f} ms "
                      f"({len(timings)} pages)", flush=True)
                results.append(Result(f"snapshot page p95, {n} concurrent viewers", p95, "s", "target",
                                      SNAPSHOT_P95_TARGET_S))
            browser = _browser_first_render(snapshot_url, cookies)
            results.append(Result("snapshot first chart in chromium, p50", statistics.median(browser), "s",
                                  "target", SNAPSHOT_P95_TARGET_S))
            voila = service.service.voila
            live_url = f"{hub.url}{prefix}live/{SLUG}"
            for n in args.live_viewers:
                timings = asyncio.run(_load(live_url, cookies, n, 1))
                rss = _kernels_rss_mb(voila.process.pid)
                print(f"   live {n:>3} viewers: p50 {_pct(timings, 0.5):.2f} s, p95 {_pct(timings, 0.95):.2f} s; "
                      f"{len(rss)} kernels, {statistics.mean(rss) if rss else 0:.0f} MB each", flush=True)
                results.append(Result(f"live first render p95, {n} concurrent viewers", _pct(timings, 0.95), "s",
                                      "target", LIVE_P95_TARGET_S))
            rss = _kernels_rss_mb(voila.process.pid)
            voila_rss = psutil.Process(voila.process.pid).memory_info().rss / 2**20
            per_viewer = statistics.mean(rss) + voila_rss / max(1, len(rss))
            results.append(Result("memory per live viewer (kernel + share of Voila)", per_viewer, "MB", "target",
                                  LIVE_MB_TARGET))
            # the peer: plain Voila serving the same notebook, no hub, no proxy, no policy
            port = free_port()
            peer_env = {**{k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG")},
                        "SOPHIA_QUERY_URL": query.url, "SOPHIA_QUERY_TOKEN": DASH_TOKEN,
                        "SOPHIA_QUERY_AUDIENCE": "sophia-executives"}
            peer = subprocess.Popen([sys.executable, "-m", "voila", str(voila.folder / "notebooks" / f"{SLUG}.ipynb"),
                                     "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1"], env=peer_env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            peer_url = f"http://127.0.0.1:{port}/"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    httpx.get(peer_url + "voila/static/", timeout=1)
                    break
                except httpx.HTTPError:
                    time.sleep(0.3)
            for n in args.live_viewers:
                ours = asyncio.run(_load(live_url, cookies, n, 1))
                theirs = asyncio.run(_load(peer_url, None, n, 1))
                print(f"   {n:>3} viewers: Sophia live p95 {_pct(ours, 0.95):.2f} s, plain Voila p95 "
                      f"{_pct(theirs, 0.95):.2f} s", flush=True)
                results.append(Result(f"live p95 vs plain Voila, {n} viewers", _pct(ours, 0.95), "s",
                                      "plain Voila (same notebook)", _pct(theirs, 0.95), target_ratio=1.2))
                snap = asyncio.run(_load(snapshot_url, cookies, n, 3))
                results.append(Result(f"snapshot p95 vs plain Voila, {n} viewers", _pct(snap, 0.95), "s",
                                      "plain Voila (same notebook)", _pct(theirs, 0.95), target_ratio=0.5))
        finally:
            if peer is not None:
                peer.terminate()
                peer.wait(10)
            service.stop()
            query.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_dashboards", description=__doc__)
    parser.add_argument("--viewers", default="1,20,80", help="concurrent snapshot viewers (comma-separated)")
    parser.add_argument("--live-viewers", default="1,5", help="concurrent live viewers (comma-separated)")
    parser.add_argument("--rounds", type=int, default=10, help="pages each snapshot viewer fetches")
    args = parser.parse_args(argv)
    args.viewers = [int(v) for v in args.viewers.split(",")]
    args.live_viewers = [int(v) for v in args.live_viewers.split(",")]
    print("== dashboards (small)", flush=True)
    results = run(args)
    for result in results:
        print(result.line(), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
