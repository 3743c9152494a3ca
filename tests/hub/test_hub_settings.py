"""The JupyterHub settings generated from sophia.yaml, checked as plain data (no hub started): roles and
scopes, authenticators, spawners and profiles, services, kernels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sophia_lib.config import SophiaConfig, load_config
from sophia_lib.config.typing import HubProfile
from sophia_lib.errors import ConfigError
from sophia_lib.hub import scopes
from sophia_lib.hub.auth import authenticator_settings
from sophia_lib.hub.config import hub_settings
from sophia_lib.hub.kernels import install_kernels, kernel_spec
from sophia_lib.hub.services import services
from sophia_lib.hub.spawners import (
    choose_profile,
    kubernetes_profile_list,
    offered_profiles,
    spawner_settings,
    usable_profiles,
)
from sophia_lib.roles import ROLES, role_for_groups

NO_COMMANDS = {"query": False, "dashboards": False, "scheduler": False}


def _config(tmp_path: Path, **hub: object) -> SophiaConfig:
    (tmp_path / "sophia.yaml").write_text(json.dumps({"var_dir": "var", "hub": hub}))
    return load_config(tmp_path / "sophia.yaml")


def test_role_scope_sets_are_nested_so_a_union_of_roles_is_the_most_privileged_role() -> None:
    order = ["executive_viewer", "analyst", "developer", "super_user"]
    for lower, higher in zip(order, order[1:], strict=False):
        assert set(scopes.ROLE_SCOPES[lower]) < set(scopes.ROLE_SCOPES[higher]), (lower, higher)
    group_roles = SophiaConfig().hub.group_roles
    for groups in (["sophia-analysts", "sophia-developers"], ["sophia-executives", "sophia-analysts"]):
        union = set().union(*(scopes.ROLE_SCOPES[group_roles[g]] for g in groups))
        assert union == set(scopes.ROLE_SCOPES[role_for_groups(groups, group_roles)])


def test_an_executive_viewer_holds_only_dashboards_and_their_own_user() -> None:
    assert set(scopes.ROLE_SCOPES["executive_viewer"]) == {"read:users!user", "access:services!service=dashboards"}
    everyone = next(r for r in scopes.load_roles(SophiaConfig().hub.group_roles, []) if r["name"] == "user")
    assert everyone["scopes"] == ["read:users!user"]  # the default 'self' (servers, tokens) is taken away


def test_load_roles_binds_each_role_to_its_groups_and_each_service_to_its_scopes() -> None:
    roles = {r["name"]: r for r in scopes.load_roles({"staff-bi": "analyst", "board": "executive_viewer",
                                                       "it": "super_user"}, ["query", "idle-culler"])}
    assert roles["sophia-analyst"]["groups"] == ["staff-bi"]
    assert roles["sophia-executive-viewer"]["groups"] == ["board"]
    assert roles["sophia-developer"]["groups"] == []
    assert roles["sophia-service-query"] == {"name": "sophia-service-query", "services": ["query"],
                                             "scopes": ["read:users:name", "read:users:groups"],
                                             "description": "What the query service needs"}
    assert "admin:users" not in roles["sophia-service-idle-culler"]["scopes"]
    assert {r for r in ROLES} == {name.removeprefix("sophia-").replace("-", "_") for name in roles
                                  if name.startswith("sophia-") and "service" not in name}


def test_the_demo_signs_in_through_the_sandbox_identity_provider(tmp_path: Path) -> None:
    config = _config(tmp_path, sandbox_idp=True, port=9000)
    cls, traits = authenticator_settings(config)
    assert cls == "oauthenticator.generic.GenericOAuthenticator"
    assert traits["authorize_url"] == "http://127.0.0.1:8701/authorize"
    assert traits["oauth_callback_url"] == "http://127.0.0.1:9000/hub/oauth_callback"
    assert traits["client_id"] == "sophia-hub" and traits["client_secret"] == "sophia-hub-demo-secret"
    assert traits["manage_groups"] is True and traits["auth_state_groups_key"] == "oauth_user.groups"
    assert traits["allowed_groups"] == set(config.hub.group_roles)
    assert traits["admin_groups"] == {"sophia-super-users"}


def test_entra_and_google_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPHIA_SECRET_HUB_CLIENT_SECRET", "s3cret")
    entra = _config(tmp_path, authenticator="azuread", tenant_id="t-123", client_id="app-1",
                    client_secret={"secret": "HUB_CLIENT_SECRET"}, group_roles={"0000-aaaa": "analyst"})
    cls, traits = authenticator_settings(entra)
    assert cls == "oauthenticator.azuread.AzureAdOAuthenticator"
    assert traits["tenant_id"] == "t-123" and traits["client_secret"] == "s3cret"
    assert traits["allowed_groups"] == {"0000-aaaa"} and traits["auth_state_groups_key"] == "user.groups"

    google = _config(tmp_path, authenticator="google", client_id="g-1", client_secret={"secret": "HUB_CLIENT_SECRET"},
                     hosted_domain="example.com", google_service_account_key_file="/etc/sophia/sa.json",
                     google_admin_email="admin@example.com")
    cls, traits = authenticator_settings(google)
    assert cls == "oauthenticator.google.GoogleOAuthenticator"
    assert traits["allowed_google_groups"] == {"example.com": set(google.hub.group_roles)}
    assert traits["admin_google_groups"] == {"example.com": {"sophia-super-users"}}
    assert traits["auth_state_groups_key"] == "google_user.google_groups"


@pytest.mark.parametrize(("hub", "key"), [
    ({"authenticator": "generic", "sandbox_idp": False, "oidc_issuer": "https://idp.example",
      "authorize_url": "https://idp.example/a", "token_url": "https://idp.example/t",
      "userdata_url": "https://idp.example/u", "client_id": "x"}, "hub.client_secret"),
    ({"authenticator": "generic", "sandbox_idp": False}, "hub.oidc_issuer"),
    ({"authenticator": "azuread", "client_id": "x"}, "hub.tenant_id"),
    ({"authenticator": "google", "client_id": "x"}, "hub.hosted_domain"),
    ({"sandbox_idp": True, "client_secret": {"secret": "NOT_STORED_ANYWHERE"}}, "hub.client_secret"),
])
def test_a_missing_sign_in_setting_names_its_key(tmp_path: Path, hub: dict, key: str) -> None:
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        authenticator_settings(_config(tmp_path, **hub))


def test_the_local_spawner_runs_servers_as_the_hubs_user_with_homes_under_var(tmp_path: Path) -> None:
    config = _config(tmp_path, sandbox_idp=True)
    settings = spawner_settings(config, {"SOPHIA_QUERY_URL": "http://q"}, gpu_present=False)
    assert settings["JupyterHub"]["spawner_class"] == "jupyterhub.spawner.SimpleLocalProcessSpawner"
    assert settings["SimpleLocalProcessSpawner"]["home_dir_template"] == str(tmp_path / "var/hub/home/{username}")
    assert settings["Spawner"]["default_url"] == "/lab"
    assert settings["Spawner"]["environment"] == {"SOPHIA_QUERY_URL": "http://q"}


def test_gpu_profiles_are_offered_by_group_and_dropped_by_the_local_spawner_without_a_gpu(tmp_path: Path) -> None:
    config = _config(tmp_path, sandbox_idp=True)
    profiles = config.hub.profiles
    assert [p.name for p in offered_profiles(profiles, ["sophia-analysts"])] == ["cpu", "gpu", "gpu-slice"]
    assert [p.name for p in offered_profiles(profiles, ["sophia-executives"])] == ["cpu"]
    form = spawner_settings(config, {}, gpu_present=True)["Spawner"]["options_form"]
    assert form is not None
    assert hub_settings(config, available=NO_COMMANDS, gpu_present=False)  # builds without a GPU
    from tornado import web

    with pytest.raises(web.HTTPError) as refused:
        choose_profile(profiles, ["sophia-executives"], "gpu")
    assert refused.value.status_code == 403
    assert choose_profile(profiles, ["sophia-analysts"], None).name == "cpu"


class _Group:
    def __init__(self, name: str) -> None:
        self.name = name


class _Spawner:
    def __init__(self, groups: list[str], options: dict | None = None, home: str = "") -> None:
        self.user = type("U", (), {"groups": [_Group(g) for g in groups], "name": "alan"})()
        self.user_options = options or {}
        self.environment: dict[str, str] = {}
        self.home_dir = home
        self.log = type("L", (), {"info": staticmethod(lambda *a: None)})()


def test_the_spawn_form_and_pre_spawn_hook_apply_the_chosen_profile(tmp_path: Path) -> None:
    config = _config(tmp_path, sandbox_idp=True, profiles=[
        {"name": "cpu", "display_name": "CPU", "default": True},
        {"name": "gpu", "display_name": "GPU", "gpu": "whole", "groups": ["sophia-analysts"],
         "cuda_visible_devices": "1"}])
    spawner = spawner_settings(config, {}, gpu_present=True)["Spawner"]
    assert 'value="gpu"' in spawner["options_form"](_Spawner(["sophia-analysts"]))
    assert spawner["options_form"](_Spawner(["sophia-developers"])) == ""  # one profile: no form
    assert spawner["options_from_form"]({"profile": ["gpu"]}) == {"profile": "gpu"}
    target = _Spawner(["sophia-analysts"], {"profile": "gpu"}, home=str(tmp_path / "home" / "alan"))
    spawner["pre_spawn_hook"](target)
    assert target.environment["CUDA_VISIBLE_DEVICES"] == "1"
    assert (tmp_path / "home" / "alan" / "explore" / "start-here.ipynb").exists()
    cpu = _Spawner(["sophia-analysts"], {"profile": "cpu"}, home=str(tmp_path / "home" / "alan"))
    spawner["pre_spawn_hook"](cpu)
    assert cpu.environment["CUDA_VISIBLE_DEVICES"] == ""


def test_systemd_settings(tmp_path: Path) -> None:
    config = _config(tmp_path, sandbox_idp=True, spawner="systemd")
    settings = spawner_settings(config, {}, gpu_present=True)
    assert settings["JupyterHub"]["spawner_class"] == "systemdspawner.SystemdSpawner"
    systemd = settings["SystemdSpawner"]
    assert systemd["user_workingdir"] == "/home/{USERNAME}" and systemd["disable_user_sudo"] is True
    assert systemd["unit_extra_properties"] == {"InaccessiblePaths": str(tmp_path / "var")}
    kept = usable_profiles(config, gpu_present=False)  # the hub host may have none; the nodes do
    assert [p.name for p in kept] == ["cpu", "gpu", "gpu-slice"]
    assert [p.name for p in usable_profiles(_config(tmp_path, sandbox_idp=True), gpu_present=False)] == ["cpu"]


def test_kubernetes_profile_list_by_group_with_gpu_and_mig_resources(tmp_path: Path) -> None:
    config = _config(tmp_path, sandbox_idp=True, spawner="kubernetes", image="registry.example/sophia:1")
    settings = spawner_settings(config, {}, gpu_present=False)
    assert settings["JupyterHub"]["spawner_class"] == "kubespawner.KubeSpawner"
    assert settings["JupyterHub"]["hub_connect_url"] == "http://hub:8081"  # pods reach the hub by service name
    assert "options_form" not in settings["Spawner"]
    analyst = settings["KubeSpawner"]["profile_list"](_Spawner(["sophia-analysts"]))
    by_slug = {p["slug"]: p for p in analyst}
    assert by_slug["cpu"]["default"] is True
    assert by_slug["gpu"]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/gpu": "1"}
    assert by_slug["gpu-slice"]["kubespawner_override"]["extra_resource_limits"] == {"nvidia.com/mig-1g.12gb": "1"}
    assert by_slug["cpu"]["kubespawner_override"]["image"] == "registry.example/sophia:1"
    executive = kubernetes_profile_list(config.hub.profiles, ["sophia-executives"], "img")
    assert [p["slug"] for p in executive] == ["cpu"]


def test_a_mig_profile_needs_its_mig_profile() -> None:
    with pytest.raises(ValueError, match="mig_profile"):
        HubProfile(name="slice", display_name="Slice", gpu="mig")


def test_services_get_commands_only_where_they_exist_and_the_culler_never_touches_services(tmp_path: Path) -> None:
    config = _config(tmp_path, sandbox_idp=True)
    declared = {s["name"]: s for s in services(config, {"query": True, "dashboards": False, "scheduler": True})}
    assert declared["query"]["command"][-2:] == ["query", "serve"]
    assert declared["query"]["url"] == "http://127.0.0.1:8702"
    assert declared["query"]["environment"]["SOPHIA_VAR_DIR"] == str(tmp_path / "var")
    assert "command" not in declared["dashboards"] and "url" not in declared["dashboards"]
    assert declared["scheduler"]["command"][-1] == "scheduler"
    assert "--timeout=3600" in declared["idle-culler"]["command"]
    assert "--cull-users" not in " ".join(declared["idle-culler"]["command"])
    off = _config(tmp_path, sandbox_idp=True, services=["query"], cull_idle_after_s=0)
    declared = {s["name"]: s for s in services(off, {"query": True, "dashboards": True, "scheduler": True})}
    assert "command" not in declared["scheduler"] and "idle-culler" not in declared


def test_hub_settings_put_it_together(tmp_path: Path) -> None:
    settings = hub_settings(_config(tmp_path, sandbox_idp=True), available=NO_COMMANDS, gpu_present=False)
    hub = settings["JupyterHub"]
    assert hub["authenticate_prometheus"] is True and hub["redirect_to_server"] is False
    assert hub["custom_scopes"] == scopes.CUSTOM_SCOPES
    assert Path(hub["template_paths"][0], "home.html").is_file()
    assert settings["ConfigurableHTTPProxy"]["command"][0].endswith("configurable-http-proxy")
    assert settings["Spawner"]["server_token_scopes"] == list(scopes.SERVER_TOKEN_SCOPES)
    assert settings["Spawner"]["environment"]["SOPHIA_QUERY_URL"] == "http://127.0.0.1:8702/services/query/"
    assert len(settings["CryptKeeper"]["keys"][0]) == 32


def test_kernels_install_into_a_prefix(tmp_path: Path) -> None:
    installed = install_kernels(prefix=str(tmp_path), gpu=True)
    assert [k.display_name for k in installed] == ["Sophia (CPU)", "Sophia (GPU)"]
    gpu = json.loads((tmp_path / "share/jupyter/kernels/sophia-gpu/kernel.json").read_text())
    assert gpu["argv"][1:5] == ["-m", "cudf.pandas", "-m", "ipykernel_launcher"]
    assert kernel_spec(False)["argv"][1:3] == ["-m", "ipykernel_launcher"]
    install_kernels(prefix=str(tmp_path), gpu=False)  # cuDF gone: the GPU kernel goes too
    assert not (tmp_path / "share/jupyter/kernels/sophia-gpu").exists()
    assert (tmp_path / "share/jupyter/kernels/sophia-cpu/kernel.json").exists()


def test_the_landing_lists_the_newest_live_version_of_each_dashboard_for_the_audience(tmp_path: Path) -> None:
    from datetime import UTC, datetime

    from sophia_lib.appdb import open_app_db
    from sophia_lib.appdb.models import PublishedDashboard
    from sophia_lib.hub.landing import dashboards_for

    app_db = open_app_db(SophiaConfig(var_dir=tmp_path / "var"))
    try:
        with app_db.session() as session:
            for slug, version, title, audience, gone in [
                    ("revenue", 1, "Revenue (old)", ["board"], False), ("revenue", 2, "Revenue", ["board"], False),
                    ("churn", 1, "Churn", ["board", "bi"], True), ("pipeline", 1, "Pipeline", ["bi"], False)]:
                session.add(PublishedDashboard(slug=slug, version=version, title=title, author="alan",
                                               audience_groups=audience, notebook_path=f"{slug}.ipynb",
                                               unpublished_at=datetime.now(UTC) if gone else None))
        assert [d.title for d in dashboards_for(app_db, ["board"])] == ["Revenue"]
        assert [d.url for d in dashboards_for(app_db, ["bi"])] == ["/services/dashboards/pipeline/"]
        assert [d.title for d in dashboards_for(app_db, [], everything=True)] == ["Pipeline", "Revenue"]
    finally:
        app_db.close()
