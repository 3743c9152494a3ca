"""`sophia hub` and JupyterHub itself refuse a wrong configuration at start, naming the key;
`sophia hub install-kernels` installs the kernels."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sophia_lib.hub.config import HUB_DIR
from tests.hub.harness import SOPHIA, hub_env, write_config

JUPYTERHUB = str(Path(sys.executable).parent / "jupyterhub")
BAD = {
    "unknown authenticator": ({"authenticator": "github"}, "hub.authenticator"),
    "group mapped to an unknown role": ({"group_roles": {"sophia-analysts": "wizard"}}, "hub.group_roles"),
    "missing client secret": ({"authenticator": "generic", "sandbox_idp": False, "client_id": "sophia",
                               "authorize_url": "https://idp.example/authorize", "token_url": "https://idp.example/t",
                               "userdata_url": "https://idp.example/userinfo"}, "hub.client_secret"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_sophia_hub_refuses_a_wrong_configuration_naming_the_key(tmp_path: Path, case: str) -> None:
    hub, key = BAD[case]
    config = write_config(tmp_path, {"hub": hub})
    done = subprocess.run([SOPHIA, "hub"], cwd=tmp_path, env=hub_env(config), capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    assert key in done.stderr and "fix" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_jupyterhub_started_directly_on_the_config_fails_naming_the_key(tmp_path: Path) -> None:
    hub, key = BAD["missing client secret"]
    config = write_config(tmp_path, {"hub": hub})
    done = subprocess.run([JUPYTERHUB, "-f", str(HUB_DIR / "jupyterhub_config.py")], cwd=tmp_path,
                          env=hub_env(config), capture_output=True, text=True, timeout=120)
    assert done.returncode != 0
    assert key in done.stdout + done.stderr


def test_install_kernels(tmp_path: Path) -> None:
    done = subprocess.run([SOPHIA, "hub", "install-kernels", "--no-gpu", "--prefix", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "Sophia (CPU)" in done.stdout and "Sophia (GPU)" not in done.stdout
    spec = json.loads((tmp_path / "share/jupyter/kernels/sophia-cpu/kernel.json").read_text())
    # the venv's interpreter (python or python3: whichever started `sophia`), so the kernel sees sophia_lib
    assert spec["display_name"] == "Sophia (CPU)" and Path(spec["argv"][0]).parent == Path(sys.executable).parent
