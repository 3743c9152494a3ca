"""What is installed and reachable, and the exact fix for what is not (``sophia doctor``).

Each check returns a :class:`Check`. ``missing`` means Sophia cannot run as configured; ``warn``
means an optional part (GPU, test tools) is absent. Checks never change anything: the app database
is only connected to, not created or migrated.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import platform
import shutil
import sys
import tempfile
from dataclasses import dataclass
from glob import glob
from pathlib import Path
from typing import Literal

from sqlalchemy.engine import URL

from sophia_lib.config import SecretRef, SophiaConfig, load_config
from sophia_lib.errors import SophiaError

TStatus = Literal["ok", "missing", "warn"]
MIN_PYTHON = (3, 11)
CONNECT_TIMEOUT_S = 3
PG_BIN_GLOB = "/usr/lib/postgresql/*/bin"
CHROMIUM = Path("/usr/bin/chromium")


@dataclass(frozen=True)
class Check:
    name: str
    status: TStatus
    detail: str
    fix: str = ""


def exit_code(checks: list[Check]) -> int:
    """0 when everything needed to run is present (warnings allowed), else 1."""
    return 1 if any(c.status == "missing" for c in checks) else 0


def run_checks(config_path: str | Path | None = None) -> list[Check]:
    """Every check, in the order shown. Config-dependent checks are skipped (as missing) if it is invalid."""
    checks = [check_python(), check_sophia()]
    config: SophiaConfig | None = None
    try:
        config = load_config(config_path)
        checks.append(Check("config", "ok", _config_source(config_path)))
    except SophiaError as exc:
        checks.append(Check("config", "missing", exc.message, exc.fix or "correct the keys named above"))
    if config is not None:
        checks += [check_var_dir(config), check_warehouse(config), check_app_db(config), check_isolation(config)]
    else:
        for name in ("var_dir", "warehouse", "app database", "isolation"):
            checks.append(Check(name, "missing", "not checked: the configuration is invalid",
                                "fix the config first (sophia config check)"))
    checks += [check_jupyterhub(), check_proxy(), check_gpu(), check_postgres_binaries(),
               check_browser(), check_playwright()]
    return checks


def _config_source(config_path: str | Path | None) -> str:
    from sophia_lib.config import config_path as find_config

    source = config_path or find_config()
    return f"valid ({source})" if source else "valid (built-in defaults; no sophia.yaml found)"


def check_python() -> Check:
    version = platform.python_version()
    if sys.version_info[:2] >= MIN_PYTHON:
        return Check("python", "ok", f"{version} ({sys.executable})")
    wanted = ".".join(map(str, MIN_PYTHON))
    return Check("python", "missing", f"{version} is too old; Sophia needs >= {wanted}",
                 f"install Python {wanted}+ and recreate the venv: rm -rf .venv && make install")


def check_sophia() -> Check:
    import sophia_lib

    return Check("sophia_lib", "ok", f"{sophia_lib.__version__} ({Path(sophia_lib.__file__).parent})")


def _writable(folder: Path) -> tuple[bool, Path]:
    """Whether ``folder`` is (or, once created, would be) writable; returns the folder actually tested."""
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        return False, probe
    try:
        with tempfile.TemporaryFile(dir=probe):
            pass
    except OSError:
        return False, probe
    return True, probe


def check_var_dir(config: SophiaConfig) -> Check:
    ok, probe = _writable(config.var_dir)
    if ok:
        note = "" if probe == config.var_dir else f" (created on first use under {probe})"
        return Check("var_dir", "ok", f"{config.var_dir} writable{note}")
    return Check("var_dir", "missing", f"{config.var_dir} is not writable ({probe} refuses new files)",
                 f"chown/chmod {probe}, or set var_dir in sophia.yaml (or SOPHIA_VAR_DIR) to a writable folder")


def check_warehouse(config: SophiaConfig) -> Check:
    from sqlalchemy.engine import make_url

    url = make_url(config.warehouse.url or "")
    if url.get_backend_name() == "duckdb":
        folder = Path(url.database or config.var_dir / "warehouse")
        ok, probe = _writable(folder)
        if ok:
            return Check("warehouse", "ok", f"DuckDB in {folder} (writable)")
        return Check("warehouse", "missing", f"DuckDB folder {folder} is not writable ({probe})",
                     f"chown/chmod {probe}, or set warehouse.url in sophia.yaml (or SOPHIA_WAREHOUSE__URL)")
    return _check_postgres("warehouse", url, config.warehouse.password, "warehouse")


def _check_postgres(name: str, url: URL, password: SecretRef | None, key: str) -> Check:
    """Connect with a short timeout: can this process reach the server the config names?"""
    where = f"{url.host or 'localhost'}:{url.port or 5432}"
    env = f"SOPHIA_{key.upper()}__URL"
    try:
        import psycopg
    except ImportError:
        return Check(name, "missing", f"PostgreSQL at {where} needs the psycopg driver",
                     "pip install 'sophia[postgres]'")
    try:
        if password is not None:
            from sophia_lib.secrets import resolve

            url = url.set(password=resolve(password))
    except SophiaError as exc:
        return Check(name, "missing", exc.message, exc.fix or "")
    dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        with psycopg.connect(dsn, connect_timeout=CONNECT_TIMEOUT_S) as conn:
            version = conn.execute("show server_version").fetchone()
    except psycopg.Error as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return Check(name, "missing", f"cannot connect to PostgreSQL at {where}: {first}",
                     f"start PostgreSQL on {where}, or correct {key}.url in sophia.yaml (or {env})")
    return Check(name, "ok", f"PostgreSQL {version[0] if version else '?'} at {where}/{url.database}")


def check_app_db(config: SophiaConfig) -> Check:
    from sqlalchemy.engine import make_url

    url = make_url(config.app_db.url or "")
    if url.get_backend_name() == "postgresql":
        reach = _check_postgres("app database", url, config.app_db.password, "app_db")
        if reach.status != "ok":
            return reach
    elif url.database:
        ok, probe = _writable(Path(url.database).parent)
        if not ok:
            return Check("app database", "missing", f"SQLite folder {Path(url.database).parent} is not writable",
                         f"chown/chmod {probe}, or set app_db.url in sophia.yaml (or SOPHIA_APP_DB__URL)")
    from sophia_lib.appdb import schema_state

    try:
        state = schema_state(config, connect_timeout=CONNECT_TIMEOUT_S)
    except SophiaError as exc:
        return Check("app database", "missing", exc.message, exc.fix or "")
    where = url.render_as_string(hide_password=True)
    if state.current is None:
        return Check("app database", "ok", f"{where}: empty; schema {state.head} is created on first use")
    if state.at_head:
        return Check("app database", "ok", f"{where}: schema at {state.head}")
    return Check("app database", "warn", f"{where}: schema {state.current}, this version ships {state.head}",
                 f"python -m sophia_lib.appdb upgrade '{where}' (or it upgrades on first use)")


def check_isolation(config: SophiaConfig) -> Check:
    """Whether user servers could read the warehouse, credentials or app DB around the query door."""
    from sophia_lib.hub.isolation import check_isolation as findings

    found = findings(config)
    if not found:
        return Check("isolation", "ok", f"user servers cannot open {config.var_dir} ({config.hub.spawner} spawner)")
    return Check("isolation", "warn", "; ".join(f.problem for f in found), "; ".join(f.fix for f in found))


def _importable(module: str) -> tuple[bool, str]:
    if importlib.util.find_spec(module) is None:
        return False, "not installed"
    try:
        imported = importlib.import_module(module)
    except Exception as exc:  # a broken install (missing CUDA libs, ABI mismatch) raises anything
        return False, f"installed but fails to import: {type(exc).__name__}: {exc}".splitlines()[0]
    return True, str(getattr(imported, "__version__", "installed"))


def check_jupyterhub() -> Check:
    ok, detail = _importable("jupyterhub")
    if ok:
        return Check("jupyterhub", "ok", detail)
    return Check("jupyterhub", "missing", f"jupyterhub {detail}; the hub cannot start",
                 "pip install jupyterhub   (then: make install)")


def check_proxy() -> Check:
    """The hub's proxy: the Python port of configurable-http-proxy (no Node.js needed)."""
    ok, detail = _importable("configurable_http_proxy")
    if ok:
        return Check("configurable-http-proxy", "ok", f"Python port {detail}")
    return Check("configurable-http-proxy", "missing", f"the Python configurable-http-proxy is {detail}; "
                 "the hub cannot route", "pip install configurable-http-proxy")


def check_gpu() -> Check:
    smi = shutil.which("nvidia-smi")
    found, detail = _importable("cudf")
    if found:
        return Check("gpu (cuDF)", "ok", f"cudf {detail}; GPU kernels available")
    fix = "on a CUDA machine: pip install 'sophia[gpu]'"
    if smi:
        return Check("gpu (cuDF)", "warn", f"NVIDIA GPU present ({smi}) but cudf is {detail}", fix)
    return Check("gpu (cuDF)", "warn", f"no NVIDIA GPU (nvidia-smi not found), cudf {detail}; "
                 "pandas on CPU is used (optional)", fix)


def _pg_binaries() -> str | None:
    initdb, pg_ctl = shutil.which("initdb"), shutil.which("pg_ctl")
    if initdb and pg_ctl:
        return str(Path(initdb).parent)
    for folder in sorted(glob(PG_BIN_GLOB), reverse=True):
        if all(os.access(Path(folder) / n, os.X_OK) for n in ("initdb", "pg_ctl")):
            return folder
    return None


def check_postgres_binaries() -> Check:
    folder = _pg_binaries()
    if folder:
        return Check("postgresql server (tests)", "ok", f"initdb and pg_ctl in {folder}")
    return Check("postgresql server (tests)", "warn", f"initdb/pg_ctl not in PATH nor {PG_BIN_GLOB}; "
                 "PostgreSQL tests are skipped", "apt-get install -y postgresql")


def check_browser() -> Check:
    found = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    if found:
        return Check("chromium (tests)", "ok", found)
    return Check("chromium (tests)", "warn", f"{CHROMIUM} not found; browser tests are skipped",
                 "apt-get install -y chromium")


def check_playwright() -> Check:
    ok, detail = _importable("playwright")
    if ok:
        return Check("playwright (tests)", "ok", detail)
    return Check("playwright (tests)", "warn", f"playwright {detail}; browser tests are skipped",
                 "pip install playwright")

