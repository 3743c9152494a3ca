"""The synthetic company: determinism, contract, cross-system agreement, mess, planted signals, time."""

from __future__ import annotations

import copy
import json
import re
import time

import numpy as np
import pandas as pd
import pytest

from sophia_lib.errors import ConfigError
from sophia_lib.sandbox.clock import PRIMARY_KEY, advance
from sophia_lib.sandbox.company import SCHEMA, TIMESTAMPS, Company
from sophia_lib.sandbox.gen.ids import BASE62
from sophia_lib.sandbox.generator import generate
from sophia_lib.sandbox.store import content_hash, export_truth, load, save, table_hashes, truth


@pytest.fixture(scope="module")
def small() -> Company:
    started = time.perf_counter()
    company = generate("small", 42)
    print(f"small generation: {time.perf_counter() - started:.2f}s")
    return company


def test_same_seed_gives_byte_identical_tables(small: Company) -> None:
    again = generate("small", 42)
    assert table_hashes(again) == table_hashes(small)


def test_different_seed_differs(small: Company) -> None:
    other = table_hashes(generate("small", 43))
    mine = table_hashes(small)
    assert sum(other[t] != mine[t] for t in mine) >= len(mine) - 3  # looks/notion_databases may coincide


def test_unknown_size_and_bad_seed_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="small, medium, large"):
        generate("huge", 1)
    with pytest.raises(ConfigError, match="non-negative"):
        generate("small", -1)


def test_schema_contract_and_timestamps(small: Company) -> None:
    small.check_schema()
    assert list(small.tables) == list(SCHEMA)
    for name, frame in small.tables.items():
        for col in TIMESTAMPS:
            assert str(frame[col].dtype) == "datetime64[ns, UTC]", (name, col)
        assert (frame["updated_at"] >= frame["created_at"]).all(), name
        deleted = frame["deleted_at"].notna()
        assert (frame.loc[deleted, "deleted_at"] >= frame.loc[deleted, "created_at"]).all(), name
        assert (frame["created_at"] <= small.now).all(), name
        assert frame[PRIMARY_KEY.get(name, frame.columns[0])].is_unique or name in {"presence", "labels"}, (
            name
        )


def test_cross_system_agreement(small: Company) -> None:
    t = small.tables
    accounts = set(t["accounts"]["account_id"])
    people = set(t["people"]["person_id"])
    employees = set(t["employees"]["employee_id"])
    opps = set(t["opportunities"]["opportunity_id"])
    assert set(t["opportunities"]["account_id"]) <= accounts
    assert set(t["opportunity_history"]["opportunity_id"]) <= opps
    assert set(t["calls"]["opportunity_id"]) <= opps
    assert set(t["calls"]["account_id"]) <= accounts
    assert {p for ps in t["calls"]["participant_person_ids"] for p in ps} <= people
    assert set(t["messages"]["channel_id"]) <= set(t["channels"]["channel_id"])
    assert set(t["messages"]["mentions_account_id"].dropna()) <= accounts
    assert set(t["invoice_lines"]["invoice_id"]) <= set(t["invoices"]["invoice_id"])
    assert set(t["tasks"]["project_id"]) <= set(t["projects"]["project_id"])
    assert set(t["tasks"]["cycle_id"].dropna()) <= set(t["cycles"]["cycle_id"])
    assert set(t["pages"]["database_id"].dropna()) <= set(t["notion_databases"]["database_id"])
    for table, col in [
        ("accounts", "owner_id"),
        ("opportunities", "owner_id"),
        ("calls", "owner_id"),
        ("activities", "owner_id"),
        ("conversations", "assignee_id"),
        ("messages", "employee_id"),
        ("tasks", "assignee_id"),
        ("projects", "owner_id"),
        ("pages", "author_id"),
        ("employees", "manager_id"),
    ]:
        assert set(t[table][col].dropna()) <= employees, (table, col)

    labels = t["labels"]
    missing_sf = set(
        labels[(labels["label"] == "missing_in") & (labels["value"] == "salesforce")]["entity_id"]
    )
    sf_accounts = set(small.presence_of("account", "salesforce")["entity_id"])
    ns_accounts = set(small.presence_of("account", "netsuite")["entity_id"])
    for account in set(t["invoices"]["account_id"]):
        assert account in accounts
        assert account in ns_accounts
        assert account in sf_accounts or account in missing_sf
    assert set(t["opportunities"]["account_id"]) <= sf_accounts
    # owners of Salesforce records are Salesforce users; Intercom conversations have Intercom people
    assert set(t["opportunities"]["owner_id"]) <= set(
        small.presence_of("employee", "salesforce")["entity_id"]
    )
    assert set(t["conversations"]["person_id"].dropna()) <= set(
        small.presence_of("person", "intercom")["entity_id"]
    )
    # customers are invoiced only after they became customers
    inv = t["invoices"].merge(t["accounts"][["account_id", "customer_since"]], on="account_id")
    assert (inv["issued_on"] >= inv["customer_since"].dt.tz_localize(None).dt.floor("D")).all()
    won_nb = t["opportunities"][t["opportunities"]["is_won"] & (t["opportunities"]["type"] == "new_business")]
    assert (
        won_nb["account_id"]
        .isin(t["accounts"].loc[t["accounts"]["customer_since"].notna(), "account_id"])
        .all()
    )


def test_stage_history_progresses_in_order(small: Company) -> None:
    order = {
        s: i
        for i, s in enumerate(
            [
                "Prospecting",
                "Qualification",
                "Needs Analysis",
                "Proposal/Price Quote",
                "Negotiation/Review",
                "Closed Won",
                "Closed Lost",
            ]
        )
    }
    hist = small["opportunity_history"].sort_values(["opportunity_id", "changed_at", "history_id"])
    for _, rows in hist.groupby("opportunity_id"):
        ranks = rows["stage"].map(order).to_numpy()
        assert ranks[0] == 0 and (np.diff(ranks) > 0).all()
    last = hist.groupby("opportunity_id")["stage"].last()
    opps = small["opportunities"].set_index("opportunity_id")
    assert (last == opps.loc[last.index, "stage"]).all()


def test_system_ids_follow_vendor_styles(small: Company) -> None:
    def sf_ok(value: str, prefix: str) -> bool:
        if len(value) != 18 or not value.startswith(prefix):
            return False
        suffix = ""
        for chunk in range(3):
            bits = sum(1 << i for i, ch in enumerate(value[chunk * 5 : chunk * 5 + 5]) if "A" <= ch <= "Z")
            suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
        return suffix == value[15:] and all(c in BASE62.decode() for c in value[:15])

    uuid = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
    assert all(sf_ok(v, "006") for v in small["opportunities"]["system_id"])
    assert all(sf_ok(v, "008") for v in small["opportunity_history"]["system_id"])
    for system, entity, check in [
        ("salesforce", "account", lambda v: sf_ok(v, "001")),
        ("salesforce", "person", lambda v: sf_ok(v, "003")),
        ("salesforce", "employee", lambda v: sf_ok(v, "005")),
        ("hubspot", "person", str.isdigit),
        ("slack", "employee", lambda v: re.fullmatch(r"U[0-9A-Z]{10}", v) is not None),
        ("linear", "employee", lambda v: uuid.match(v) is not None),
        ("netsuite", "account", str.isdigit),
        ("intercom", "person", lambda v: re.fullmatch(r"[0-9a-f]{24}", v) is not None),
    ]:
        values = small.presence_of(entity, system)["system_id"]
        assert len(values) and all(check(v) for v in values), (system, entity)
    assert all(v.startswith("C") and len(v) == 11 for v in small["channels"]["system_id"])
    assert small["calls"]["system_id"].str.isdigit().all()
    assert small["invoices"]["tran_id"].str.fullmatch(r"INV\d{5,}").all()
    tasks = small["tasks"]
    linear = tasks[tasks["system"] == "linear"]
    assert linear["system_id"].str.match(uuid).all()
    assert linear["identifier"].str.fullmatch(r"[A-Z]+-\d+").all()
    assert tasks.loc[tasks["system"] == "asana", "system_id"].str.isdigit().all()
    assert small["pages"]["system_id"].str.match(uuid).all()
    for frame in (small["messages"],):
        assert frame["ts"].str.fullmatch(r"\d{10}\.\d{6}").all()
        assert not frame.duplicated(["channel_id", "ts"]).any()
    presence = small["presence"]
    assert not presence.duplicated(["system", "entity", "system_id"]).any()


def test_mess_is_present_and_recorded(small: Company) -> None:
    pres = small["presence"]
    people = small["people"].set_index("person_id")["email"]
    shown = pres[(pres["entity"] == "person") & pres["email"].notna()]
    canonical = shown["entity_id"].map(people)
    differs = shown["email"] != canonical
    same_when_normalised = shown["email"].str.strip().str.lower() == canonical
    assert (differs & same_when_normalised).sum() > 10
    assert pres["is_duplicate"].sum() > 5
    dups = pres[pres["is_duplicate"]]
    originals = pres[~pres["is_duplicate"]].set_index(["entity_id", "system"]).index
    assert dups.set_index(["entity_id", "system"]).index.isin(originals).all()
    domains = pres[(pres["entity"] == "account") & pres["domain"].notna()]["domain"]
    assert domains.str.lower().str.startswith("www.").any()
    names = pres[(pres["entity"] == "account") & (pres["system"] == "netsuite")]
    canon = small["accounts"].set_index("account_id")["name"]
    assert (names["name"] != names["entity_id"].map(canon)).any()
    labels = small["labels"]
    missing = labels[labels["label"] == "missing_in"]
    assert len(missing) > 0
    for row in missing.itertuples():
        entity = "account" if row.entity == "account" else "person"
        assert row.entity_id not in set(small.presence_of(entity, row.value)["entity_id"])
    for name in ("people", "opportunities", "tasks", "messages"):
        assert small[name]["deleted_at"].notna().any(), name
    calls = small["calls"]
    lag = calls["analysis_ready_at"] - calls["started_at"]
    assert (lag > pd.Timedelta(days=1)).any() and (lag < pd.Timedelta(hours=6)).any()
    assert small["channels"]["is_archived"].any() and small["pages"]["archived"].any()


def _weekly_new_pipeline(company: Company) -> pd.Series:
    opps = company["opportunities"]
    opps = opps[opps["type"] != "renewal"]
    week = opps["created_at"].dt.tz_localize(None).dt.to_period("W-SUN").dt.start_time
    return opps.groupby(week)["amount"].sum()


def test_planted_pipeline_drop_is_visible(small: Company) -> None:
    anomaly = small["anomalies"].query("kind == 'pipeline_drop'").iloc[0]
    weekly = _weekly_new_pipeline(small)
    week = anomaly["starts_at"].tz_localize(None)
    assert week.weekday() == 0
    weekly = weekly.reindex(pd.date_range(week - pd.Timedelta(weeks=4), week, freq="7D"), fill_value=0.0)
    baseline = weekly.iloc[:4].mean()
    assert weekly.iloc[4] < 0.9 * baseline
    assert json.loads(anomaly["detail"])["drop_pct"] > 10


def test_health_collapse_and_outage_are_visible(small: Company) -> None:
    anomalies = small["anomalies"]
    collapses = anomalies[anomalies["kind"] == "health_collapse"]
    assert len(collapses) >= 1
    conv = small["conversations"]
    for row in collapses.itertuples():
        acc = small["accounts"].set_index("account_id").loc[row.entity_id]
        assert acc["churned_at"] == row.ends_at
        mine = conv[conv["account_id"] == row.entity_id]
        window = mine[(mine["created_at"] >= row.starts_at) & (mine["created_at"] < row.ends_at)]
        before = mine[
            (mine["created_at"] >= row.starts_at - (row.ends_at - row.starts_at))
            & (mine["created_at"] < row.starts_at)
        ]
        assert len(window) > 2 * max(len(before), 1)
        assert window["csat_rating"].astype(float).mean() < 2.5
    outage = anomalies[anomalies["kind"] == "sync_outage"].iloc[0]
    assert outage["system"] in {"hubspot", "salesforce", "intercom", "netsuite", "gong"}
    assert outage["starts_at"] < outage["ends_at"] <= small.now
    assert (anomalies["kind"] == "project_slip").sum() == 1


def test_win_driver_high_interactivity_calls(small: Company) -> None:
    labels = small["labels"]
    high = labels[labels["label"] == "high_interactivity_calls"].set_index("entity_id")["value"].astype(int)
    opps = small["opportunities"]
    closed = opps[opps["is_closed"] & (opps["type"] != "renewal")].set_index("opportunity_id")
    calls = high.reindex(closed.index)
    print(
        "mean high-interactivity calls: won",
        calls[closed["is_won"]].mean(),
        "lost",
        calls[~closed["is_won"]].mean(),
    )
    assert calls[closed["is_won"]].mean() > calls[~closed["is_won"]].mean()
    churned = labels[labels["label"] == "churned"]
    assert (churned["value"] == "true").any() and (churned["value"] == "false").any()


def test_advance_is_deterministic_and_inside_the_window(small: Company) -> None:
    first, second = copy.deepcopy(small), copy.deepcopy(small)
    start = small.now
    changes = [advance(first, 1440), advance(first, 720)]
    again = [advance(second, 1440), advance(second, 720)]
    assert [c.counts() for c in changes] == [c.counts() for c in again]
    assert content_hash(first) == content_hash(second)
    assert first.now == start + pd.Timedelta(minutes=2160)
    kinds = {k for c in changes for per in c.counts().values() for k, n in per.items() if n}
    assert kinds == {"create", "update", "delete"}
    for change in changes:
        for table, per_kind in change.changes.items():
            frame = first[table].set_index(PRIMARY_KEY[table])
            for kind, keys in per_kind.items():
                if not keys:
                    continue
                rows = frame.loc[list(dict.fromkeys(keys))]
                column = {"create": "created_at", "update": "updated_at", "delete": "deleted_at"}[kind]
                stamps = rows[column]
                if kind != "create":  # a row touched again later moves on; the latest touch is in some window
                    stamps = stamps[stamps <= change.end]
                assert ((stamps > change.start) & (stamps <= change.end)).all(), (table, kind)
    first.check_schema()
    assert small.now == start  # the fixture itself was not touched


def test_save_load_round_trip(small: Company, tmp_path) -> None:
    folder = save(small, tmp_path / "cache")
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["seed"] == 42 and manifest["size"] == "small"
    assert manifest["content_hash"] == content_hash(small)
    loaded = load(folder)
    assert loaded.now == small.now and loaded.seed == small.seed
    for name in SCHEMA:
        pd.testing.assert_frame_equal(loaded[name], small[name])
    advance(loaded, 60)
    written = export_truth(loaded, tmp_path / "truth")
    assert {p.stem for p in written} == set(truth(loaded))


def test_load_missing_cache_names_the_fix(tmp_path) -> None:
    with pytest.raises(ConfigError, match="sandbox generate"):
        load(tmp_path / "nothing")


def test_cli_generate_advance_truth(tmp_path) -> None:
    from typer.testing import CliRunner

    from sophia_lib.cli.sandbox_cmd import app

    runner = CliRunner()
    out = tmp_path / "co"
    result = runner.invoke(app, ["generate", "--size", "small", "--seed", "3", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "opportunities" in result.output and (out / "manifest.json").is_file()
    result = runner.invoke(app, ["advance", "--minutes", "1440", "--dir", str(out)])
    assert result.exit_code == 0, result.output
    assert "messages" in result.output
    result = runner.invoke(app, ["truth", "--dir", str(out), "--out", str(tmp_path / "t")])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "t" / "entity_map.parquet").is_file()
    bad = runner.invoke(app, ["generate", "--size", "huge"])
    assert bad.exit_code != 0 and "small, medium, large" in str(bad.exception)


@pytest.mark.slow
def test_medium_size_scale_and_advance_speed() -> None:
    started = time.perf_counter()
    company = generate("medium", 42)
    print(f"medium generation: {time.perf_counter() - started:.1f}s")
    counts = {name: len(frame) for name, frame in company.tables.items()}
    print(counts)
    assert counts["accounts"] == 2_000 and counts["messages"] == 200_000
    assert counts["people"] > 15_000 and counts["opportunities"] > 6_000 and counts["invoice_lines"] > 50_000
    assert counts["conversations"] == 20_000 and counts["tasks"] == 30_000 and counts["calls"] > 4_000
    started = time.perf_counter()
    changes = advance(company, 15)
    print(f"medium advance 15 min: {time.perf_counter() - started:.2f}s, {changes.counts()}")
    labels = company["labels"]
    churned = labels[labels["label"] == "churned"].set_index("entity_id")["value"] == "true"
    sponsor = (
        labels[labels["label"] == "exec_sponsor"].set_index("entity_id")["value"].reindex(churned.index)
        == "true"
    )
    assert churned[~sponsor].mean() > churned[sponsor].mean()
