"""The credential store: encryption at rest, keys, damage handling, backends, resolve() and redaction."""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import stat
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography.fernet import Fernet

from sophia_lib.config import SecretRef, load_config
from sophia_lib.errors import ConfigError, MissingDependencyError, SecretError
from sophia_lib.secrets import (
    FileBackend,
    RedactSecrets,
    SecretRecord,
    VaultUnavailableError,
    backend_names,
    open_store,
    resolve,
)
from sophia_lib.secrets.file import key_id
from tests.support.fake_vault import fake_vault

ROOT = Path(__file__).resolve().parents[1]
VALUE = "s3cr3t-Value-9f8e7d"
needs_hvac = pytest.mark.skipif(importlib.util.find_spec("hvac") is None,
                                reason="hvac is not installed (pip install hvac; it belongs in the dev extra)")


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def assert_no_value(exc: BaseException, *values: str) -> None:
    """Neither the message nor a chained exception (shown in tracebacks) carries a value."""
    for value in values:
        assert value not in str(exc) and value not in repr(exc)
    assert exc.__cause__ is None and (exc.__context__ is None or exc.__suppress_context__)


# -- the file backend ------------------------------------------------------------------------------


def test_file_store_round_trip_versions_and_describe(tmp_path: Path) -> None:
    store = open_store()
    assert store.backend_name == "file" and store.location() == str(tmp_path / "var" / "secrets.enc")
    first = store.set("HUBSPOT_TOKEN", VALUE)
    assert first["version"] == 1 and first["backend"] == "file" and first["updated_at"]
    store.set("GONG_KEY", "another-value")
    assert store.rotate("HUBSPOT_TOKEN", VALUE + "-2")["version"] == 2
    assert store.set("HUBSPOT_TOKEN", VALUE + "-3")["version"] == 3

    again = open_store()  # a fresh store reads what the first one wrote
    assert again.get("HUBSPOT_TOKEN") == VALUE + "-3"
    assert again.names() == ["GONG_KEY", "HUBSPOT_TOKEN"]
    rows = again.describe()
    assert [(r["name"], r["version"], r["backend"]) for r in rows] == [("GONG_KEY", 1, "file"),
                                                                        ("HUBSPOT_TOKEN", 3, "file")]
    assert all(set(r) == {"name", "backend", "updated_at", "version"} for r in rows)
    assert VALUE not in repr(rows) and VALUE not in repr(again)

    again.delete("GONG_KEY")
    assert again.names() == ["HUBSPOT_TOKEN"]
    with pytest.raises(SecretError, match="not in"):
        again.delete("GONG_KEY")


def test_file_at_rest_is_encrypted_private_and_written_atomically(tmp_path: Path) -> None:
    store = open_store()
    store.set("SLACK_BOT_TOKEN", VALUE)
    var = tmp_path / "var"
    raw = (var / "secrets.enc").read_bytes()
    assert VALUE.encode() not in raw and b"SLACK_BOT_TOKEN" not in raw  # names are hidden too
    assert mode(var / "secrets.enc") == 0o600 and mode(var / "secrets.key") == 0o600
    key = (var / "secrets.key").read_bytes().strip()
    envelope = json.loads(raw)
    assert envelope["key_id"] == key_id(key)
    plain = json.loads(Fernet(key).decrypt(envelope["token"].encode()))
    assert plain["secrets"]["SLACK_BOT_TOKEN"]["value"] == VALUE
    assert sorted(p.name for p in var.iterdir()) == ["secrets.enc", "secrets.enc.lock", "secrets.key"]  # no temp


def test_key_from_environment_needs_no_key_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPHIA_SECRETS_KEY", Fernet.generate_key().decode())
    open_store().set("A_KEY", VALUE)
    assert not (tmp_path / "var" / "secrets.key").exists()
    assert open_store().get("A_KEY") == VALUE


def test_invalid_environment_key_is_refused_without_echoing_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPHIA_SECRETS_KEY", "not-a-fernet-key-but-maybe-a-typo")
    with pytest.raises(SecretError, match="SOPHIA_SECRETS_KEY is not a valid key") as err:
        open_store().set("A_KEY", VALUE)
    assert_no_value(err.value, "not-a-fernet-key-but-maybe-a-typo", VALUE)


def test_wrong_key_is_a_clear_error_and_overwrites_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    open_store().set("A_KEY", VALUE)
    path = tmp_path / "var" / "secrets.enc"
    before = path.read_bytes()
    monkeypatch.setenv("SOPHIA_SECRETS_KEY", Fernet.generate_key().decode())
    for action in (lambda s: s.get("A_KEY"), lambda s: s.set("B_KEY", "other-value"), lambda s: s.describe()):
        with pytest.raises(SecretError, match="encrypted with another key") as err:
            action(open_store())
        assert "set SOPHIA_SECRETS_KEY to the key used before" in str(err.value)
        assert_no_value(err.value, VALUE)
    assert path.read_bytes() == before
    monkeypatch.delenv("SOPHIA_SECRETS_KEY")
    assert open_store().get("A_KEY") == VALUE  # the key file still opens it


@pytest.mark.parametrize("damage", ["garbage", "flip_token", "no_secrets_map"])
def test_damaged_file_is_a_clear_error_and_overwrites_nothing(tmp_path: Path, damage: str) -> None:
    open_store().set("A_KEY", VALUE)
    path = tmp_path / "var" / "secrets.enc"
    envelope = json.loads(path.read_bytes())
    key = (tmp_path / "var" / "secrets.key").read_bytes().strip()
    if damage == "garbage":
        path.write_bytes(b"\x00not json at all")
    elif damage == "flip_token":
        token = envelope["token"]
        envelope["token"] = token[:40] + ("A" if token[40] != "A" else "B") + token[41:]
        path.write_text(json.dumps(envelope))
    else:  # decrypts fine but the plaintext (which quotes the value) is not the expected JSON
        envelope["token"] = Fernet(key).encrypt(f'{{"oops": "{VALUE}"'.encode()).decode()
        path.write_text(json.dumps(envelope))
    before = path.read_bytes()
    with pytest.raises(SecretError, match="is damaged") as err:
        open_store().get("A_KEY")
    assert "restore" in str(err.value) and "nothing was changed" in str(err.value)
    assert_no_value(err.value, VALUE)
    with pytest.raises(SecretError, match="is damaged"):
        open_store().set("B_KEY", "other-value")
    assert path.read_bytes() == before


def test_key_file_readable_by_others_is_refused(tmp_path: Path) -> None:
    open_store().set("A_KEY", VALUE)
    key_path = tmp_path / "var" / "secrets.key"
    key_path.chmod(0o644)
    with pytest.raises(SecretError, match="readable by group or others") as err:
        open_store().get("A_KEY")
    assert f"chmod 600 {key_path}" in str(err.value)
    key_path.chmod(0o600)
    assert open_store().get("A_KEY") == VALUE


def test_lost_key_is_not_silently_replaced(tmp_path: Path) -> None:
    open_store().set("A_KEY", VALUE)
    (tmp_path / "var" / "secrets.key").unlink()
    with pytest.raises(SecretError, match="its key is missing"):
        open_store().set("B_KEY", "other-value")
    assert not (tmp_path / "var" / "secrets.key").exists()


def test_an_empty_store_reads_without_creating_a_key(tmp_path: Path) -> None:
    store = open_store()
    assert store.names() == [] and store.describe() == []
    assert not (tmp_path / "var").exists()


def test_writes_from_several_processes_all_land(tmp_path: Path) -> None:
    var = tmp_path / "var"
    code = ("import sys; from sophia_lib.secrets import FileBackend; b = FileBackend(sys.argv[1]); "
            "[b.put(f'P{sys.argv[2]}_{i}', 'value-' + sys.argv[2]) for i in range(5)]")
    FileBackend(var).put("FIRST", "value-first")  # make the key once, as a first `credentials set` would
    procs = [subprocess.Popen([sys.executable, "-c", code, str(var), str(n)], cwd=ROOT) for n in range(4)]
    assert [p.wait(timeout=60) for p in procs] == [0, 0, 0, 0]
    names = FileBackend(var).names()
    assert len(names) == 21 and {f"P{n}_{i}" for n in range(4) for i in range(5)} <= set(names)


# -- errors and names ------------------------------------------------------------------------------


def test_missing_secret_names_the_fix() -> None:
    with pytest.raises(SecretError) as err:
        open_store().get("SALESFORCE_REFRESH_TOKEN")
    text = str(err.value)
    assert "'SALESFORCE_REFRESH_TOKEN' is not set" in text
    assert "sophia credentials set SALESFORCE_REFRESH_TOKEN" in text
    assert "SOPHIA_SECRET_SALESFORCE_REFRESH_TOKEN" in text
    assert err.value.reason == "secret_missing" and isinstance(err.value, KeyError)


def test_rotate_needs_an_existing_secret_and_values_are_validated() -> None:
    store = open_store()
    with pytest.raises(SecretError, match="sophia credentials set NEW_ONE"):
        store.rotate("NEW_ONE", VALUE)
    with pytest.raises(SecretError, match="not a valid secret name"):
        store.set("bad-name", VALUE)
    with pytest.raises(SecretError, match="empty") as err:
        store.set("GOOD", "")
    assert_no_value(err.value, VALUE)


def test_secret_record_repr_hides_the_value() -> None:
    record = SecretRecord("A", VALUE, 1, "2025-01-01T00:00:00+00:00")
    assert VALUE not in repr(record) and "A" in repr(record)


# -- backends, resolve() ---------------------------------------------------------------------------


def test_unknown_backend_lists_the_valid_ones(monkeypatch: pytest.MonkeyPatch) -> None:
    assert {"env", "file", "vault"} <= set(backend_names())
    with pytest.raises(ConfigError, match="unknown secrets backend 'fiel' — did you mean 'file'") as err:
        open_store(backend="fiel")
    assert "env, file, vault" in str(err.value)
    monkeypatch.setenv("SOPHIA_SECRETS_BACKEND", "nope")
    with pytest.raises(ConfigError, match="'nope'"):
        open_store()


def test_env_backend_is_read_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SOPHIA_SECRETS_BACKEND", "env")
    monkeypatch.setenv("SOPHIA_SECRET_CI_TOKEN", VALUE)
    store = open_store()
    assert store.backend_name == "env" and store.get("CI_TOKEN") == VALUE
    assert store.describe() == [{"name": "CI_TOKEN", "backend": "env", "updated_at": None, "version": None}]
    with pytest.raises(SecretError, match="read-only") as err:
        store.set("CI_TOKEN", "other-value")
    assert_no_value(err.value, VALUE, "other-value")
    with pytest.raises(SecretError, match="export SOPHIA_SECRET_MISSING="):
        store.get("MISSING")


def test_resolve_prefers_the_store_then_falls_back_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SOPHIA_SECRET_DB_PASSWORD", "from-env-1234")
    assert resolve(SecretRef(secret="DB_PASSWORD")) == "from-env-1234"  # nothing stored: env, no key made
    assert not (tmp_path / "var").exists()
    open_store().set("DB_PASSWORD", "from-store-5678")
    assert resolve(SecretRef(secret="DB_PASSWORD")) == "from-store-5678"
    rows = open_store().describe()
    assert [(r["name"], r["backend"]) for r in rows] == [("DB_PASSWORD", "file")]  # env copy is shadowed

    other = tmp_path / "elsewhere"
    monkeypatch.setenv("SOPHIA_VAR_DIR", str(other))
    config = load_config()
    assert resolve(SecretRef(secret="DB_PASSWORD"), config) == "from-env-1234"  # config's var_dir is empty
    monkeypatch.delenv("SOPHIA_SECRET_DB_PASSWORD")
    with pytest.raises(SecretError, match="sophia credentials set DB_PASSWORD"):
        resolve(SecretRef(secret="DB_PASSWORD"), config)


def test_backend_settings_from_a_config_secrets_section(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Ready for the lead's `secrets:` config section: read by attribute, the environment still wins."""
    config = SimpleNamespace(var_dir=tmp_path / "cfg", secrets=SimpleNamespace(backend="env"))
    assert open_store(config).backend_name == "env"
    config.secrets.backend = None
    assert open_store(config).location() == str(tmp_path / "cfg" / "secrets.enc")
    config.secrets.backend = "env"
    monkeypatch.setenv("SOPHIA_SECRETS_BACKEND", "file")
    assert open_store(config).backend_name == "file"
    assert open_store(config, backend="env").backend_name == "env"


# -- redaction -------------------------------------------------------------------------------------


def test_log_records_never_show_a_handed_out_value(caplog: pytest.LogCaptureFixture) -> None:
    store = open_store()
    store.set("LOGGED_TOKEN", "tok-" + VALUE)
    value = store.get("LOGGED_TOKEN")
    log = logging.getLogger("sophia.connectors.test")  # a child logger: propagates to the root handlers
    with caplog.at_level(logging.INFO):
        log.info("refreshing with token %s for %s", value, "hubspot")
        log.warning(f"Authorization: Bearer {value}")
        try:
            raise RuntimeError(f"vendor said: bad token {value}")
        except RuntimeError:
            log.exception("request failed")
    text = caplog.text
    assert value not in text
    assert "refreshing with token *** for hubspot" in text and "Bearer ***" in text
    assert "vendor said: bad token ***" in text


def test_redact_filter_on_a_handler_and_leaves_other_records_alone() -> None:
    store = open_store()
    store.set("FILTER_TOKEN", VALUE)
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "value=%s n=%d", (store.get("FILTER_TOKEN"), 3), None)
    assert RedactSecrets().filter(record) is True
    assert record.getMessage() == "value=*** n=3"
    plain = logging.LogRecord("x", logging.INFO, __file__, 1, "n=%d", (3,), None)
    RedactSecrets().filter(plain)
    assert plain.msg == "n=%d" and plain.args == (3,)  # untouched when there is nothing to hide


# -- vault -----------------------------------------------------------------------------------------


@needs_hvac
def test_vault_backend_round_trip_against_kv_v2() -> None:
    with fake_vault() as vault:
        store = open_store(backend="vault", url=vault.url, token=vault.token)
        assert store.backend_name == "vault" and store.describe() == []
        assert store.set("NETSUITE_TOKEN", VALUE)["version"] == 1
        store.set("GONG_KEY", "gong-value")
        assert store.rotate("NETSUITE_TOKEN", VALUE + "-2")["version"] == 2
        assert store.get("NETSUITE_TOKEN") == VALUE + "-2"
        assert store.names() == ["GONG_KEY", "NETSUITE_TOKEN"]
        rows = store.describe()
        assert [(r["name"], r["version"], r["backend"]) for r in rows] == [("GONG_KEY", 1, "vault"),
                                                                            ("NETSUITE_TOKEN", 2, "vault")]
        assert rows[0]["updated_at"].endswith("+00:00") and "." not in rows[0]["updated_at"]
        assert vault.entries["sophia/NETSUITE_TOKEN"].versions[2]["data"] == {"value": VALUE + "-2"}
        store.delete("NETSUITE_TOKEN")
        assert store.names() == ["GONG_KEY"] and "sophia/NETSUITE_TOKEN" not in vault.entries
        with pytest.raises(SecretError, match="sophia credentials set NETSUITE_TOKEN"):
            store.get("NETSUITE_TOKEN")
        assert ("DELETE", "/v1/secret/metadata/sophia/NETSUITE_TOKEN") in vault.requests


@needs_hvac
def test_vault_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    with fake_vault() as vault:
        monkeypatch.setenv("SOPHIA_SECRETS_BACKEND", "vault")
        monkeypatch.setenv("VAULT_ADDR", vault.url)
        monkeypatch.delenv("VAULT_TOKEN", raising=False)
        with pytest.raises(SecretError, match="export VAULT_TOKEN="):
            open_store()
        monkeypatch.setenv("VAULT_TOKEN", vault.token)
        open_store().set("A_KEY", VALUE)
        assert resolve(SecretRef(secret="A_KEY")) == VALUE
        open_store(prefix="team/sophia").set("B_KEY", VALUE)
        assert sorted(vault.entries) == ["sophia/A_KEY", "team/sophia/B_KEY"]
        monkeypatch.setenv("SOPHIA_SECRET_ONLY_IN_ENV", "env-value")
        assert resolve(SecretRef(secret="ONLY_IN_ENV")) == "env-value"  # env fallback behind vault too


@needs_hvac
def test_vault_errors_are_clear_and_never_carry_values() -> None:
    with fake_vault() as vault:
        good = open_store(backend="vault", url=vault.url, token=vault.token)
        good.set("A_KEY", VALUE)
        with pytest.raises(SecretError, match="refused to read secret 'A_KEY' \\(permission denied\\)") as err:
            open_store(backend="vault", url=vault.url, token="hvs.wrong-token").get("A_KEY")
        assert "VAULT_TOKEN" in str(err.value)
        assert_no_value(err.value, VALUE, vault.token)
        with pytest.raises(SecretError, match="no handler for route") as err:
            open_store(backend="vault", url=vault.url, token=vault.token, mount="kv").get("A_KEY")
        assert "vault secrets enable -path=kv kv-v2" in str(err.value)
        vault.sealed = True
        with pytest.raises(VaultUnavailableError, match="Vault is sealed") as err:
            good.get("A_KEY")
        assert_no_value(err.value, VALUE)
    with pytest.raises(VaultUnavailableError, match="cannot reach Vault"):
        good.get("A_KEY")


def test_vault_without_hvac_names_the_pip_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "hvac", None)  # import hvac now raises ImportError
    with pytest.raises(MissingDependencyError, match="pip install hvac"):
        open_store(backend="vault", url="http://127.0.0.1:1", token="t")


def test_permissions_do_not_depend_on_umask(tmp_path: Path) -> None:
    old = os.umask(0)
    try:
        open_store().set("A_KEY", VALUE)
    finally:
        os.umask(old)
    assert mode(tmp_path / "var" / "secrets.enc") == 0o600 and mode(tmp_path / "var" / "secrets.key") == 0o600
