"""Drive the hub's real sign-in over HTTP: the authorization-code flow through the sandbox identity provider."""

from __future__ import annotations

import re

import httpx

REQUEST_ID = re.compile(r'name="request_id" value="([^"]+)"')


def login(hub_url: str, username: str, password: str | None = None, next_path: str | None = None) -> tuple[
        httpx.Client, httpx.Response]:
    """Sign ``username`` in: hub → IdP authorize → login form → code → hub callback. Returns the client (holding
    the hub's cookies) and the final response after following the redirects."""
    client = httpx.Client(follow_redirects=True, timeout=60)
    page = client.get(f"{hub_url}/hub/oauth_login", params={"next": next_path} if next_path else None)
    assert page.status_code == 200 and "request_id" in page.text, (page.status_code, page.url, page.text[:500])
    request_id = REQUEST_ID.search(page.text).group(1)
    login_url = str(page.url).split("?", 1)[0].rsplit("/", 1)[0] + "/login"
    final = client.post(login_url, data={"request_id": request_id, "username": username,
                                        "password": password or f"{username}-demo"})
    return client, final


def api(client: httpx.Client, hub_url: str, method: str, path: str, **kwargs) -> httpx.Response:
    """A hub API call authenticated by the browser cookie, as the hub's own pages make it (XSRF header; a POST
    must be JSON)."""
    xsrf = client.cookies.get("_xsrf", path="/hub/")
    headers = {"X-XSRFToken": xsrf} if xsrf else {}
    return client.request(method, f"{hub_url}/hub/api{path}", headers=headers, **kwargs)
