"""How user servers start: local processes (demo), systemd units (bare metal) or Kubernetes pods.

Profiles (``hub.profiles``) are offered by IdP group. The local and systemd spawners get a small spawn
form and a pre-spawn hook from here (JupyterHub's ``options_form`` / ``pre_spawn_hook``); KubeSpawner
gets its native ``profile_list``. SystemdSpawner and KubeSpawner are optional packages: their settings
are generated here as plain dicts and only imported by JupyterHub where installed.
"""

from __future__ import annotations

import html
import os
import pwd
import shutil
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from sophia_lib.config.typing import HubProfile, SophiaConfig

REPO = Path(__file__).resolve().parents[2]
STARTER_NOTEBOOKS = REPO / "notebooks" / "explore"
STARTER_FOLDER = "explore"
SPAWNER_CLASSES = {
    "local": "jupyterhub.spawner.SimpleLocalProcessSpawner",
    "systemd": "systemdspawner.SystemdSpawner",
    "kubernetes": "kubespawner.KubeSpawner",
}
IMAGE_NOTEBOOKS = "/opt/sophia/notebooks/explore"
"""Where the single-user image keeps the starter notebooks (kubernetes)."""


def host_has_gpu() -> bool:
    return Path("/dev/nvidiactl").exists() or shutil.which("nvidia-smi") is not None


def offered_profiles(profiles: Iterable[HubProfile], groups: Iterable[str]) -> list[HubProfile]:
    """The profiles a member of ``groups`` may choose: open ones and those naming one of their groups."""
    mine = set(groups)
    return [p for p in profiles if not p.groups or mine & set(p.groups)]


def usable_profiles(config: SophiaConfig, gpu_present: bool | None = None) -> list[HubProfile]:
    """The configured profiles; the local spawner drops GPU ones on a host without a GPU."""
    gpu_present = host_has_gpu() if gpu_present is None else gpu_present
    if config.hub.spawner == "local" and not gpu_present:
        return [p for p in config.hub.profiles if p.gpu == "none"]
    return list(config.hub.profiles)


def profile_environment(profile: HubProfile) -> dict[str, str]:
    """Environment a local or systemd server gets for ``profile``: which GPU (or none) it sees."""
    if profile.gpu == "none":
        return {"CUDA_VISIBLE_DEVICES": "", "SOPHIA_PROFILE": profile.name}
    return {"CUDA_VISIBLE_DEVICES": profile.cuda_visible_devices or "0", "SOPHIA_PROFILE": profile.name}


def _default_first(profiles: list[HubProfile]) -> list[HubProfile]:
    return sorted(profiles, key=lambda p: not p.default)


def _user_groups(spawner: Any) -> list[str]:
    return [g.name for g in spawner.user.groups]


def make_options_form(profiles: list[HubProfile]) -> Callable[[Any], str]:
    """``Spawner.options_form``: radio buttons for the user's profiles; no form when they have one."""

    def options_form(spawner: Any) -> str:
        mine = _default_first(offered_profiles(profiles, _user_groups(spawner)))
        if len(mine) <= 1:
            return ""
        rows = []
        for i, p in enumerate(mine):
            checked = " checked" if i == 0 else ""
            rows.append(
                f'<div class="form-check"><input class="form-check-input" type="radio" name="profile" '
                f'id="profile-{p.name}" value="{p.name}"{checked}><label class="form-check-label" '
                f'for="profile-{p.name}"><strong>{html.escape(p.display_name)}</strong> '
                f'<span class="text-muted">{html.escape(p.description)}</span></label></div>')
        return "<fieldset><legend>Server profile</legend>" + "".join(rows) + "</fieldset>"

    return options_form


def options_from_form(formdata: dict[str, list[str]]) -> dict[str, str]:
    """``Spawner.options_from_form``: the chosen profile's name."""
    chosen = formdata.get("profile", [""])
    return {"profile": chosen[0]} if chosen and chosen[0] else {}


def choose_profile(profiles: list[HubProfile], groups: Iterable[str], asked: str | None) -> HubProfile:
    """The profile to start: the one asked for if offered to these groups, else their default."""
    from tornado import web

    mine = _default_first(offered_profiles(profiles, groups))
    if not mine:
        raise web.HTTPError(403, "No server profile is offered to your groups; ask your administrator.")
    if not asked:
        return mine[0]
    for profile in mine:
        if profile.name == asked:
            return profile
    raise web.HTTPError(403, f"The profile {asked!r} is not offered to you.")


def copy_starter_notebooks(home: Path, owner: str | None = None) -> bool:
    """Copy notebooks/explore into ``home`` on first spawn (when the folder is not there yet)."""
    target = home / STARTER_FOLDER
    if target.exists() or not STARTER_NOTEBOOKS.is_dir():
        return False
    home.mkdir(parents=True, exist_ok=True)
    shutil.copytree(STARTER_NOTEBOOKS, target, ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__"))
    if owner is not None and os.geteuid() == 0:
        try:
            entry = pwd.getpwnam(owner)
        except KeyError:
            return True
        for path in [target, *target.rglob("*")]:
            os.chown(path, entry.pw_uid, entry.pw_gid)
    return True


def make_pre_spawn_hook(config: SophiaConfig, profiles: list[HubProfile]) -> Callable[[Any], None]:
    """``Spawner.pre_spawn_hook``: apply the chosen profile and copy the starter notebooks."""
    kind = config.hub.spawner

    def pre_spawn_hook(spawner: Any) -> None:
        if kind == "kubernetes":
            return  # KubeSpawner applies its profile_list; the image's postStart hook copies the notebooks
        profile = choose_profile(profiles, _user_groups(spawner), spawner.user_options.get("profile"))
        spawner.environment = {**spawner.environment, **profile_environment(profile)}
        if kind == "systemd":
            if profile.cpu_limit:
                spawner.cpu_limit = profile.cpu_limit
            if profile.mem_limit:
                spawner.mem_limit = profile.mem_limit
            home = Path(os.path.expanduser(f"~{spawner.user.name}"))
            copy_starter_notebooks(home, owner=spawner.user.name)
        else:
            copy_starter_notebooks(Path(spawner.home_dir))
        spawner.log.info("Sophia: %s starts with profile %s", spawner.user.name, profile.name)

    return pre_spawn_hook


def singleuser_cmd() -> list[str]:
    script = Path(sys.executable).parent / "jupyterhub-singleuser"
    return [str(script)] if script.exists() else [sys.executable, "-m", "jupyterhub.singleuser"]


def kubernetes_profile_list(profiles: list[HubProfile], groups: Iterable[str], image: str) -> list[dict[str, Any]]:
    """KubeSpawner's ``profile_list`` entries offered to ``groups``."""
    out = []
    for profile in _default_first(offered_profiles(profiles, groups)):
        override: dict[str, Any] = {"image": profile.image or image,
                                    "environment": {"SOPHIA_PROFILE": profile.name}}
        if profile.cpu_limit:
            override["cpu_limit"] = profile.cpu_limit
        if profile.mem_limit:
            override["mem_limit"] = profile.mem_limit
        if profile.gpu in ("whole", "shared"):
            # time-slicing is the device plugin's sharing config: a share is requested like a whole GPU
            override["extra_resource_limits"] = {"nvidia.com/gpu": "1"}
        elif profile.gpu == "mig":
            override["extra_resource_limits"] = {f"nvidia.com/mig-{profile.mig_profile}": "1"}
        out.append({"display_name": profile.display_name, "slug": profile.name,
                    "description": profile.description, "default": profile.default,
                    "kubespawner_override": override})
    return out


def spawner_settings(config: SophiaConfig, environment: dict[str, str],
                     gpu_present: bool | None = None) -> dict[str, dict[str, Any]]:
    """``{ConfigurableClass: {trait: value}}`` for the configured spawner."""
    hub = config.hub
    profiles = usable_profiles(config, gpu_present)
    common: dict[str, Any] = {
        "default_url": "/lab",
        "environment": environment,
    }
    kind = hub.spawner
    out: dict[str, dict[str, Any]] = {"JupyterHub": {"spawner_class": SPAWNER_CLASSES[kind]}, "Spawner": common}
    if kind == "kubernetes":
        image = hub.image
        # servers run in other pods: the hub listens on every interface and is reached by its service name
        out["JupyterHub"].update({"hub_bind_url": f"http://0.0.0.0:{hub.internal_port}",
                                  "hub_connect_url": f"http://hub:{hub.internal_port}"})
        out["KubeSpawner"] = {
            "image": image,
            "profile_list": lambda spawner: kubernetes_profile_list(profiles, _user_groups(spawner), image),
            "lifecycle_hooks": {"postStart": {"exec": {"command": [
                "sh", "-c", f"[ -d \"$HOME/{STARTER_FOLDER}\" ] || cp -r {IMAGE_NOTEBOOKS} \"$HOME/\""]}}},
            "cmd": ["jupyterhub-singleuser"],
        }
        return out
    common.update({
        "cmd": singleuser_cmd(),
        "options_form": make_options_form(profiles),
        "options_from_form": options_from_form,
        "pre_spawn_hook": make_pre_spawn_hook(config, profiles),
    })
    if kind == "local":
        home = hub.home_dir or str(config.var_dir / "hub" / "home" / "{username}")
        out["SimpleLocalProcessSpawner"] = {"home_dir_template": home}
        if os.geteuid() == 0:
            common["args"] = ["--ServerApp.allow_root=True"]  # the demo as root (containers, CI)
    else:
        out["SystemdSpawner"] = {
            "user_workingdir": "/home/{USERNAME}",
            "isolate_tmp": True,
            "disable_user_sudo": True,
            # servers must not read the warehouse, the credential store or the hub's state
            "unit_extra_properties": {"InaccessiblePaths": str(config.var_dir)},
            "extra_paths": [str(Path(sys.executable).parent)],
        }
    return out
