"""The HTML pages: the login form and the error pages. Everything user-supplied is escaped."""

from __future__ import annotations

import html

from starlette.responses import HTMLResponse

from sophia_lib.sandbox.idp.accounts import IdpClient

_STYLE = ("body{font-family:system-ui,sans-serif;max-width:26rem;margin:4rem auto;padding:0 1rem;color:#222}"
          "label{display:block;margin:.8rem 0 .2rem}input{width:100%;padding:.4rem;box-sizing:border-box}"
          "button{margin-top:1rem;padding:.5rem 1.2rem}.error{color:#a00;font-weight:600}"
          ".note{color:#666;font-size:.85rem}")


def page(title: str, body: str, status: int = 200) -> HTMLResponse:
    document = (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(title)}</title>"
                f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>{body}</body></html>")
    return HTMLResponse(document, status, headers={
        "Cache-Control": "no-store",
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer",
    })


def error_page(message: str, status: int) -> HTMLResponse:
    return page("Sign-in error", f'<p class="error">{html.escape(message)}</p>', status)


def login_page(request_id: str, client: IdpClient, username: str, error: str | None) -> HTMLResponse:
    esc = html.escape
    notice = f'<p class="error" role="alert">{esc(error)}</p>' if error else ""
    body = (
        f"<p>Sign in to <strong>{esc(client.name or client.client_id)}</strong>.</p>{notice}"
        '<form method="post" action="login">'
        f'<input type="hidden" name="request_id" value="{esc(request_id)}">'
        f'<label for="username">Username</label><input id="username" name="username" value="{esc(username)}"'
        ' autocomplete="username" required autofocus>'
        '<label for="password">Password</label><input id="password" name="password" type="password"'
        ' autocomplete="current-password" required>'
        '<button type="submit">Sign in</button></form>'
        '<p class="note">Sophia demo identity provider: demo accounts only.</p>'
    )
    return page("Sign in", body, 401 if error else 200)
