"""Live mode: Voila behind the service, read-only, bounded, each kernel querying as its own viewer."""

from __future__ import annotations

import json
import re
import struct

import pytest
from tornado import httpclient, websocket
from tornado.ioloop import IOLoop

from sophia_lib.dashboards.live import LiveKernels, adopt_viewer_token, message_allowed
from tests.dashboards.conftest import DashEnv, assert_no_traceback, login

KERNEL_ID = re.compile(r'"kernelId":\s*"([0-9a-f-]{36})"')


def _msg(msg_type: str, channel: str = "shell", **content) -> dict:
    return {"header": {"msg_type": msg_type, "msg_id": "1", "session": "s", "username": "", "version": "5.3"},
            "parent_header": {}, "metadata": {}, "content": content, "channel": channel, "buffers": []}


def test_only_widget_traffic_passes_the_filter() -> None:
    assert message_allowed(json.dumps(_msg("comm_msg", comm_id="x", data={})))[0]
    assert message_allowed(json.dumps(_msg("kernel_info_request")))[0]
    assert message_allowed(json.dumps(_msg("comm_open", target_name="jupyter.widget")))[0]
    for refused in (_msg("execute_request", code="import os"), _msg("comm_open", target_name="evil"),
                    _msg("complete_request", code="os."), _msg("input_reply", "stdin", value="x"),
                    _msg("shutdown_request", "control")):
        assert not message_allowed(json.dumps(refused))[0], refused["header"]["msg_type"]
    assert not message_allowed("not json")[0]
    body = json.dumps(_msg("execute_request", code="1")).encode()  # legacy binary framing
    framed = struct.pack("!II", 1, 8) + body
    assert message_allowed(framed) == (False, "execute_request")


def test_the_kernel_limit_is_a_bound() -> None:
    kernels = LiveKernels(limit=2)
    assert kernels.reserve() and kernels.reserve()
    assert not kernels.reserve()
    kernels.release()
    kernels.add("k1", "vic", "sales")
    assert not kernels.reserve()
    kernels.drop("k1")
    assert kernels.reserve()


def test_a_live_kernel_uses_the_viewer_s_token() -> None:
    env = {"HTTP_X_SOPHIA_VIEWER_TOKEN": "viewer-token", "SOPHIA_QUERY_TOKEN": "x", "SOPHIA_QUERY_AUDIENCE": "g"}
    adopt_viewer_token(env)
    assert env["SOPHIA_QUERY_TOKEN"] == "viewer-token" and "SOPHIA_QUERY_AUDIENCE" not in env


def _open_live(env: DashEnv, user: str, slug: str = "executive-overview"):
    client = login(env.hub, user)
    assert client.get(env.prefix_url).status_code == 200
    page = client.get(f"{env.prefix_url}live/{slug}", timeout=120)
    return client, page


def test_the_executive_opens_a_live_dashboard(dash_env: DashEnv, dash_service) -> None:
    client, page = _open_live(dash_env, "vic")
    assert page.status_code == 200, page.text[:500]
    kernel = KERNEL_ID.search(page.text).group(1)
    assert dash_service.service.kernels.owner(kernel) == "vic"
    assert "application/vnd.jupyter.widget-view+json" in page.text
    assert_no_traceback(page.text)
    # Voila itself is not reachable without the service's secret, nor its notebook routes through the proxy
    assert client.get(f"{dash_env.prefix_url}live/voila/render/executive-overview.ipynb").status_code == 404
    assert client.get(f"{dash_env.prefix_url}live/voila/files/executive-overview.ipynb").status_code == 404
    voila = dash_service.service.voila
    import httpx

    assert httpx.get(f"{voila.url}{voila.base_url}voila/render/executive-overview.ipynb").status_code in (302, 403)


def _ws(base: str, client, kernel: str, messages: list[str], wait_s: float = 8) -> tuple[int | None, list]:
    """Send ``messages`` on the kernel's websocket; return (close code or None, what came back in ``wait_s``)."""
    import asyncio

    cookies = "; ".join(f"{c.name}={c.value}" for c in client.cookies.jar)
    url = base.replace("http://", "ws://") + f"live/api/kernels/{kernel}/channels?session_id=t"

    async def run() -> tuple[int | None, list]:
        request = httpclient.HTTPRequest(url, headers={"Cookie": cookies, "Sec-Fetch-Mode": "websocket"})
        conn = await websocket.websocket_connect(request)
        for m in messages:
            await conn.write_message(m)
        received: list = []
        try:
            while True:
                reply = await asyncio.wait_for(conn.read_message(), wait_s)
                if reply is None:
                    return conn.close_code, received
                received.append(reply)
        except TimeoutError:
            conn.close()
            return None, received

    return IOLoop.current().run_sync(run, timeout=120)


def test_code_cannot_be_executed_in_a_live_kernel(dash_env: DashEnv, dash_service, tmp_path) -> None:
    client, page = _open_live(dash_env, "vic", "sales")
    kernel = KERNEL_ID.search(page.text).group(1)
    marker = tmp_path / "pwned"
    execute = json.dumps(_msg("execute_request", code=f"open({str(marker)!r}, 'w').write('x')", silent=False))
    direct = f"{dash_service.url}/services/dashboards/"
    for base in (dash_env.prefix_url, direct):  # through the hub's proxy, and straight to the service
        close_code, received = _ws(base, client, kernel, [execute])
        assert not any("execute_reply" in str(r) or "execute_input" in str(r) for r in received)
        assert not marker.exists()
    assert close_code == 1008  # the service closes the socket (the Python proxy does not relay the close)
    allowed = json.dumps(_msg("kernel_info_request"))
    close_code, received = _ws(direct, client, kernel, [allowed], wait_s=3)
    assert any("kernel_info_reply" in str(r) for r in received)


def test_another_viewer_cannot_attach_to_someone_s_kernel(dash_env: DashEnv, dash_service) -> None:
    _, page = _open_live(dash_env, "vic", "finance")
    kernel = KERNEL_ID.search(page.text).group(1)
    intruder = login(dash_env.hub, "ana")
    assert intruder.get(dash_env.prefix_url).status_code == 200
    assert intruder.get(f"{dash_env.prefix_url}live/api/kernels/{kernel}").status_code == 403
    with pytest.raises(httpclient.HTTPClientError) as refused:
        _ws(dash_env.prefix_url, intruder, kernel, [])
    assert refused.value.code == 403


def test_beyond_the_limit_viewers_get_a_busy_page(dash_env: DashEnv, dash_service) -> None:
    kernels = dash_service.service.kernels
    saved = kernels.limit
    kernels.limit = kernels.count  # every slot taken
    try:
        client = login(dash_env.hub, "vic")
        assert client.get(dash_env.prefix_url).status_code == 200
        busy = client.get(f"{dash_env.prefix_url}live/sales")
        assert busy.status_code == 503 and "Busy, try again" in busy.text and "Retry-After" in busy.headers
        assert "/d/sales/" in busy.text  # the snapshot is offered instead
    finally:
        kernels.limit = saved
