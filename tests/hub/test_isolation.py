"""Isolation (issue 5, "Query door"): user servers cannot open the warehouse, the credentials or the app DB.

The recipe checks run anywhere. The real proof runs as root with two throwaway OS users, laid out as
deploy/ says: a service user owning var_dir (0700, files 0600) and running `sophia query serve`, and a
"user server" user. Processes of the second are refused every file, yet read data through the door.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import secrets
import shutil
import signal
import sqlite3
import stat
import subprocess
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pandas as pd
import pytest
import yaml

from sophia_lib.config import SophiaConfig, load_config
from sophia_lib.errors import ConfigError, SophiaError
from sophia_lib.hub.isolation import check_isolation
from sophia_lib.hub.services import services
from sophia_lib.hub.spawners import spawner_settings
from sophia_lib.sandbox.background import free_port

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ME = pwd.getpwuid(os.geteuid()).pw_name
ALL_AVAILABLE = {"query": True, "dashboards": True, "scheduler": True}


# -- the recipe, checked anywhere ----------------------------------------------------------------------


def test_systemd_spawner_makes_var_dir_inaccessible(tmp_path: Path) -> None:
    config = SophiaConfig(var_dir=tmp_path / "var", hub={"spawner": "systemd"})
    settings = spawner_settings(config, {}, gpu_present=True)["SystemdSpawner"]
    assert settings["unit_extra_properties"]["InaccessiblePaths"] == str(config.var_dir)
    assert settings["disable_user_sudo"] and settings["isolate_tmp"]


def test_services_run_as_the_service_user_and_an_unknown_one_stops_the_hub(tmp_path: Path) -> None:
    config = SophiaConfig(var_dir=tmp_path / "var", hub={"service_user": ME})
    declared = {s["name"]: s for s in services(config, ALL_AVAILABLE)}
    assert all(declared[n]["user"] == ME for n in ("query", "dashboards", "scheduler"))
    assert "user" not in declared["idle-culler"]  # the culler touches no data: it stays with the hub
    assert all("user" not in s for s in services(SophiaConfig(var_dir=tmp_path / "var"), ALL_AVAILABLE))
    missing = SophiaConfig(var_dir=tmp_path / "var", hub={"service_user": f"nosuch{secrets.token_hex(4)}"})
    with pytest.raises(ConfigError, match="hub.service_user") as raised:
        services(missing, ALL_AVAILABLE)
    assert "useradd" in (raised.value.fix or "")


def test_gh200_example_isolates() -> None:
    config = load_config(DEPLOY / "sophia.gh200.yaml")
    assert config.hub.spawner == "systemd" and config.hub.service_user == "sophia"
    systemd = spawner_settings(config, {}, gpu_present=True)["SystemdSpawner"]
    assert systemd["unit_extra_properties"]["InaccessiblePaths"] == "/srv/sophia/var"
    unit = (DEPLOY / "systemd" / "sophia-hub.service").read_text()
    for line in ("User=root", "UMask=0077", "Environment=SOPHIA_CONFIG=/srv/sophia/sophia.yaml"):
        assert f"\n{line}\n" in unit, line


def test_kubernetes_user_pods_do_not_mount_the_warehouse() -> None:
    values = yaml.safe_load((DEPLOY / "kubernetes" / "values.yaml").read_text())
    docs = list(yaml.safe_load_all((DEPLOY / "kubernetes" / "services.yaml").read_text()))
    assert "sophia-var" not in json.dumps(values), "only the sophia-services pod may mount the warehouse volume"
    assert not values["singleuser"].get("extraVolumes")
    pod = next(d for d in docs if d["kind"] == "Deployment")["spec"]["template"]["spec"]
    assert {"name": "var", "persistentVolumeClaim": {"claimName": "sophia-var"}} in pod["volumes"]
    assert pod["securityContext"]["runAsNonRoot"]
    policy = next(d for d in docs if d["kind"] == "NetworkPolicy")
    allowed = [p["podSelector"]["matchLabels"]["component"] for p in policy["spec"]["ingress"][0]["from"]]
    assert sorted(allowed) == ["hub", "proxy"]


def test_check_isolation_names_each_hole_and_its_fix(tmp_path: Path) -> None:
    var = tmp_path / "var"
    var.mkdir(mode=0o755)
    var.chmod(0o755)
    key = var / "secrets.key"
    key.write_text("k")
    key.chmod(0o644)
    demo = check_isolation(SophiaConfig(var_dir=var))
    assert any("hub.spawner is local" in f.problem and "systemd" in f.fix for f in demo)
    config = SophiaConfig(var_dir=var, hub={"spawner": "systemd", "service_user": ME})
    found = {f.problem: f.fix for f in check_isolation(config)}
    assert any("open to group/others (mode 755)" in p and fix == f"chmod 700 {var}" for p, fix in found.items())
    assert any("secrets.key is readable" in p and fix == f"chmod 600 {key}" for p, fix in found.items())
    var.chmod(0o700)
    key.chmod(0o600)
    assert check_isolation(config) == []


def test_doctor_warns_about_the_demo_spawner(tmp_path: Path) -> None:
    from sophia_lib.doctor import run_checks

    (tmp_path / "sophia.yaml").write_text(f"var_dir: {tmp_path / 'var'}\n")
    check = {c.name: c for c in run_checks(tmp_path / "sophia.yaml")}["isolation"]
    assert check.status == "warn" and "local" in check.detail and "docs/operations.md" in check.fix


# -- the proof, as root with real OS users -----------------------------------------------------------------

SKIP_WHY = ("needs root and useradd to create throwaway OS users; not forced by SOPHIA_REQUIRE_SERVERS "
            "because CI may not run as root")
QUERY_TOKEN = secrets.token_hex(24)
PEOPLE = pd.DataFrame({"person_key": ["p1", "p2"], "full_name": ["Jane Roe", "John Poe"],
                       "email": ["jane.roe@acme.example", "john.poe@globex.example"]})


def _need_root() -> None:
    if os.geteuid() != 0 or shutil.which("useradd") is None or shutil.which("userdel") is None:
        pytest.skip(SKIP_WHY)


@dataclass
class Layout:
    base: Path
    var: Path
    service: pwd.struct_passwd
    person: pwd.struct_passwd
    url: str
    token: str
    service_pid: int


def _become(user: pwd.struct_passwd) -> None:
    os.setgroups(os.getgrouplist(user.pw_name, user.pw_gid))
    os.setgid(user.pw_gid)
    os.setuid(user.pw_uid)
    os.environ.update(HOME=user.pw_dir, USER=user.pw_name, LOGNAME=user.pw_name)


def as_user(user: pwd.struct_passwd, fn: Callable[[], Any]) -> Any:
    """Run ``fn`` in a child process that has become ``user`` (uid, gid, groups): what a spawner does
    before it starts a server. A fork, not an exec, so it works wherever the interpreter lives."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        try:
            os.close(read)
            _become(user)
            payload = {"result": fn()}
        except BaseException as exc:
            payload = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        try:
            with os.fdopen(write, "w") as out:
                out.write(json.dumps(payload, default=str))
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read) as got:
        data = got.read()
    os.waitpid(pid, 0)
    payload = json.loads(data)
    assert "error" not in payload, payload.get("trace") or payload
    return payload["result"]


def _attempt(fn: Callable[[], Any]) -> str:
    try:
        fn()
    except PermissionError:
        return "refused"
    except (duckdb.Error, sqlite3.Error, SophiaError) as exc:  # the OS refusal, as each library words it
        text = str(exc)
        if "Permission denied" in text or "unable to open database file" in text:
            return "refused"
        return f"error: {text}"
    except Exception as exc:
        return f"error: {type(exc).__name__}: {exc}"
    return "allowed"


def _read(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def direct_reads(var: Path) -> Callable[[], dict[str, str]]:
    """Every way around the door a user server might try; run in the child, it reports what happened."""
    snapshot = next((var / "warehouse" / "snapshots").glob("*.duckdb"))  # found by root, the child cannot list

    def attempts() -> dict[str, str]:
        return {
            "list var_dir": _attempt(lambda: os.listdir(var)),
            "open the DuckDB snapshot": _attempt(lambda: duckdb.connect(str(snapshot), read_only=True)
                                                 .execute("select count(*) from core.people").fetchone()),
            "read secrets.key": _attempt(lambda: _read(var / "secrets.key")),
            "read secrets.enc": _attempt(lambda: _read(var / "secrets.enc")),
            "credential store API": _attempt(lambda: _store_get(var)),
            "open app.db": _attempt(lambda: sqlite3.connect(f"file:{var / 'app.db'}?mode=ro", uri=True)
                                    .execute("select count(*) from audit_log").fetchone()),
        }

    return attempts


def _store_get(var: Path) -> None:
    from sophia_lib.secrets import open_store

    if open_store(SophiaConfig(var_dir=var)).get("WAREHOUSE_PASSWORD") is None:
        raise LookupError("WAREHOUSE_PASSWORD not found")


def _useradd(name: str) -> pwd.struct_passwd:
    subprocess.run(["useradd", "--create-home", "--shell", "/usr/sbin/nologin", name], check=True,
                   capture_output=True)
    return pwd.getpwnam(name)


def _prepare_var(var: Path, hub_api: str, analyst_token: str) -> None:
    """A var_dir as an existing install has it: published snapshot, credential store, app DB with audit."""
    from sophia_lib.query.client import QueryClient
    from sophia_lib.query.identity import HubIdentity
    from sophia_lib.query.service import start_in_thread
    from sophia_lib.secrets import open_store
    from sophia_lib.warehouse import open_warehouse

    config = SophiaConfig(var_dir=var)
    warehouse = open_warehouse(config)
    try:
        warehouse.publish(lambda builder: builder.write_table("core", "people", PEOPLE))
    finally:
        warehouse.close()
    open_store(config).set("WAREHOUSE_PASSWORD", "s3cret-" + secrets.token_hex(8))
    # one read through the door as root: creates app.db and its audit log (and loads every module the
    # service needs, so the forked children below need not import from an interpreter they cannot read)
    identifier = HubIdentity(hub_api, QUERY_TOKEN, config.hub.group_roles, config.query.required_scope)
    running = start_in_thread(config, identifier=identifier)
    try:
        assert len(QueryClient(running.url, analyst_token).sql("select email from core.people")) == 2
    finally:
        running.stop()
    import sophia_lib.cli  # noqa: F401 - loaded before the fork, like the service's modules


def _serve_as(user: pwd.struct_passwd, env: dict[str, str], log: Path) -> int:
    """``sophia query serve`` as ``user`` with the unit's UMask=0077 (a forked child, see :func:`as_user`)."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            os.dup2(fd, 1)
            os.dup2(fd, 2)
            os.setsid()
            _become(user)
            os.umask(0o077)
            for name in [k for k in os.environ if k.startswith(("SOPHIA_", "JUPYTERHUB_"))]:
                del os.environ[name]
            os.environ.update(env)
            os.chdir(user.pw_dir)
            from sophia_lib.cli import cli

            cli(["query", "serve", "--log-level", "WARNING"], prog_name="sophia")
            code = 0
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else 1
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(fd)
    return pid


def _wait_healthy(url: str, pid: int, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            raise RuntimeError(f"sophia query serve exited ({status}):\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"sophia query serve did not answer at {url}:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def layout() -> Iterator[Layout]:
    _need_root()
    from tests.support.hub import minimal_config, start_hub

    suffix = secrets.token_hex(3)
    names = [f"sophiasvc{suffix}", f"sophiausr{suffix}"]
    base = Path(tempfile.mkdtemp(prefix="sophia-isolation-"))
    base.chmod(0o755)  # reachable by both users: only var_dir's own mode may stop them
    created: list[str] = []
    pid = 0
    hub_config = minimal_config(
        services=[{"name": "query", "api_token": QUERY_TOKEN}],
        roles=[{"name": "sophia-query-service", "scopes": ["read:users:name", "read:users:groups"],
                "services": ["query"]},
               {"name": "user", "scopes": ["self", "access:services!service=query"]}])
    try:
        service, person = (_useradd(n) for n in names)
        created = names
        with start_hub(hub_config) as hub:
            hub.create_user("ana", ["sophia-analysts"])
            token = hub.token_for("ana")
            var = base / "var"
            _prepare_var(var, hub.api_url, token)
            # the recipe (docs/operations.md): var_dir belongs to the service user, nobody else may enter
            subprocess.run(["chown", "-R", f"{service.pw_name}:{service.pw_name}", str(var)], check=True)
            subprocess.run(["chmod", "-R", "go-rwx", str(var)], check=True)
            port = free_port()
            env = {"SOPHIA_VAR_DIR": str(var), "SOPHIA_QUERY__PORT": str(port),
                   "JUPYTERHUB_API_URL": hub.api_url, "JUPYTERHUB_API_TOKEN": QUERY_TOKEN}
            log = base / "query.log"
            pid = _serve_as(service, env, log)
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url, pid, log)
            yield Layout(base, var, service, person, url, token, pid)
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, 0)
        for name in created:
            subprocess.run(["userdel", "-r", name], capture_output=True)
        shutil.rmtree(base, ignore_errors=True)


def test_the_service_user_owns_var_dir_and_the_query_service_runs_as_it(layout: Layout) -> None:
    assert layout.var.stat().st_uid == layout.service.pw_uid
    assert stat.S_IMODE(layout.var.stat().st_mode) == 0o700
    for path in layout.var.rglob("*"):
        assert path.stat().st_uid == layout.service.pw_uid, path
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
    status = Path(f"/proc/{layout.service_pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    assert uid_line.split()[1:] == [str(layout.service.pw_uid)] * 4
    config = SophiaConfig(var_dir=layout.var, hub={"spawner": "systemd", "service_user": layout.service.pw_name})
    assert check_isolation(config) == []


def test_a_user_server_cannot_open_the_warehouse_credentials_or_app_db(layout: Layout) -> None:
    refused = as_user(layout.person, direct_reads(layout.var))
    assert refused == dict.fromkeys(refused, "refused"), refused
    assert len(refused) == 6


def test_the_service_user_can_open_them_so_the_refusals_are_about_the_user(layout: Layout) -> None:
    allowed = as_user(layout.service, direct_reads(layout.var))
    assert allowed == dict.fromkeys(allowed, "allowed"), allowed


def test_a_user_server_reads_through_the_door_with_its_token_only(layout: Layout) -> None:
    url, token = layout.url, layout.token

    def through_the_door() -> dict[str, Any]:
        from sophia_lib.query.client import QueryClient

        frame = QueryClient(url, token).sql("select person_key, email from core.people order by person_key")
        anonymous = httpx.post(f"{url}/api/sql", json={"sql": "select * from core.people"}, timeout=10)
        return {"keys": frame["person_key"].tolist(), "emails": frame["email"].tolist(),
                "snapshot": frame.attrs.get("snapshot_id"), "anonymous": anonymous.status_code}

    got = as_user(layout.person, through_the_door)
    assert got["keys"] == ["p1", "p2"] and got["snapshot"]
    assert not set(got["emails"]) & set(PEOPLE["email"]), "the analyst's policy hashes contact emails"
    assert got["anonymous"] == 401
    # and what the service wrote while serving (audit head, mask salt) is private to it as well
    for path in layout.var.rglob("*"):
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
