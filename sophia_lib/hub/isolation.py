"""Can a user server read around the query door? What ``sophia doctor`` checks (docs/security.md#isolation).

The production recipes (``deploy/``) keep the warehouse files, the credential store and the app database
in ``var_dir``, owned by the services' OS user (``hub.service_user``) with mode 0700 (files 0600), while
user servers run as each person's own OS user (SystemdSpawner, with ``InaccessiblePaths=var_dir`` on top)
or in their own pods (KubeSpawner). These checks only read file metadata; they change nothing.
"""

from __future__ import annotations

import os
import pwd
import stat
from dataclasses import dataclass
from pathlib import Path

from sophia_lib.config.typing import SophiaConfig

HUB_STATE = "hub"
"""``var_dir/hub``: the hub's own state (root-owned under SystemdSpawner); the services never read it."""


@dataclass(frozen=True)
class Finding:
    problem: str
    fix: str


def _owner(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def sensitive_files(config: SophiaConfig) -> list[Path]:
    """The files in ``var_dir`` a user server must never open: credential store, its key, the app database."""
    var_dir = Path(config.var_dir)
    files = [var_dir / "secrets.key", var_dir / "secrets.enc"]
    url = config.app_db.url or ""
    if url.startswith("sqlite:///"):
        files.append(Path(url.removeprefix("sqlite:///")))
    return [f for f in files if f.exists()]


def check_isolation(config: SophiaConfig) -> list[Finding]:
    """Everything that would let a user server read the warehouse, the credentials or the app DB directly."""
    found: list[Finding] = []
    kind = config.hub.spawner
    if kind == "local":
        me = _owner(os.geteuid())
        found.append(Finding(
            f"hub.spawner is local: every user server runs as the hub's OS user ({me}) and can open var_dir "
            "directly, bypassing the query door (fine for the demo, not for real people)",
            "set hub.spawner: systemd (one box) or kubernetes, see docs/operations.md"))
    service_user = config.hub.service_user
    if kind == "systemd" and service_user is None and os.geteuid() == 0:
        found.append(Finding(
            "hub.service_user is not set: the query, dashboards and scheduler services run as root with the hub",
            "create a system user (useradd --system sophia), chown var_dir to it and set hub.service_user: sophia"))
    var_dir = Path(config.var_dir)
    if not var_dir.is_dir():
        return found
    if _mode(var_dir) & 0o077:
        found.append(Finding(f"var_dir {var_dir} is open to group/others (mode {_mode(var_dir):o})",
                             f"chmod 700 {var_dir}"))
    for path in sensitive_files(config):
        if _mode(path) & 0o077:
            found.append(Finding(f"{path} is readable by group/others (mode {_mode(path):o})", f"chmod 600 {path}"))
    if service_user is not None:
        found += _ownership(var_dir, service_user)
    return found


def _ownership(var_dir: Path, service_user: str) -> list[Finding]:
    """var_dir and what the services share in it belong to ``service_user`` (the hub's state excepted)."""
    try:
        uid = pwd.getpwnam(service_user).pw_uid
    except KeyError:
        return [Finding(f"hub.service_user {service_user!r} is not an OS user on this machine",
                        f"useradd --system --home-dir {var_dir} --shell /usr/sbin/nologin {service_user}")]
    fix = (f"chown -R {service_user}: {var_dir} && chmod -R go-rwx {var_dir} && "
           f"chown -R root: {var_dir / HUB_STATE}")
    if var_dir.stat().st_uid != uid:
        return [Finding(f"var_dir {var_dir} is owned by {_owner(var_dir.stat().st_uid)}, not by hub.service_user "
                        f"{service_user}: the services cannot write to it", fix)]
    strangers = sorted(p.name for p in var_dir.iterdir() if p.name != HUB_STATE and p.lstat().st_uid != uid)
    if strangers:
        return [Finding(f"{', '.join(strangers[:5])} in {var_dir} not owned by {service_user}: files written by "
                        "another user (root?) that the services cannot update", fix)]
    return []
