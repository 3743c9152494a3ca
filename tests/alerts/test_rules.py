"""alerts.yaml validation: the shipped rules load; each invalid rule is refused naming the rule and the key."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from sophia_lib.alerts import AlertRuleError, load_rules, parse_rules
from sophia_lib.alerts.rules import REPO_RULES, parse_duration
from sophia_lib.cli import cli
from sophia_lib.config import SophiaConfig

BASE = {"name": "r", "kind": "change", "metric": "pipeline_value", "threshold_pct": 10}

INVALID: list[tuple[dict[str, Any], str]] = [
    ({**BASE, "metric": "pipline_value"}, "rule 'r', key 'metric': unknown metric 'pipline_value' — did you mean "
                                          "'pipeline_value'"),
    ({**BASE, "kind": "treshold"}, "rule 'r', key 'kind': unknown kind 'treshold' — did you mean 'threshold'?"),
    ({**BASE, "threshold": 10}, "key 'threshold': unknown key for kind change — did you mean 'threshold_pct'?"),
    ({**BASE, "threshold_pct": -5}, "key 'threshold_pct' = -5: Input should be greater than 0"),
    ({**BASE, "cooldown": "soon"}, "key 'cooldown' = 'soon': 'soon' is not a duration; write e.g. 30m, 2h"),
    ({**BASE, "notify": ["pager:ops"]}, "key 'notify' = ['pager:ops']: delivery target 'pager:ops' is not "
                                        "channel:address"),
    ({**BASE, "by": ["regoin"]}, "rule 'r', key 'by': metric 'pipeline_value' has no dimension 'regoin' — did you "
                                 "mean 'region'?"),
    ({**BASE, "grain": "day"}, "rule 'r', key 'grain': metric 'pipeline_value' has no grain 'day'"),
    ({"name": "r", "kind": "anomaly", "metric": "support_conversations", "grain": "week", "seasonality": "weekday"},
     "rule 'r', key 'seasonality': weekday seasonality needs grain day"),
    ({"name": "Bad Name", "kind": "sync_failure"}, "key 'name' = 'Bad Name': rule names are lowercase"),
    ({"name": "r", "kind": "threshold", "metric": "arr"}, "key 'op' = (missing): Field required"),
    ({"name": "r", "kind": "freshness", "dashboard": "Data Health"}, "a dashboard slug is lowercase"),
    ({"name": "r"}, "rule 'r' has no 'kind'"),
]


@pytest.mark.parametrize(("rule", "expected"), INVALID, ids=[e[1][:40] for e in INVALID])
def test_invalid_rules_name_rule_and_key(rule: dict[str, Any], expected: str) -> None:
    with pytest.raises(AlertRuleError) as info:
        rules = parse_rules({"rules": [rule]}, "alerts.yaml")
        from sophia_lib.alerts.rules import check_against_catalog

        check_against_catalog(rules, None, "alerts.yaml")
    assert expected in str(info.value)


def test_file_level_errors(tmp_path: Path) -> None:
    file = tmp_path / "alerts.yaml"
    for text, expected in [
        ("rules: [\n", "is not valid YAML at line"),
        ("rules: []\n", "'rules' must be a non-empty list"),
        ("rule:\n  - name: x\n", "unknown top-level key(s) rule"),
        ("defaults: {metric: arr}\nrules:\n  - {name: x, kind: job_failure}\n", "defaults may set"),
        ("rules:\n  - {name: x, kind: job_failure}\n  - {name: x, kind: sync_failure}\n", "rule 'x' is defined twice"),
    ]:
        file.write_text(text)
        with pytest.raises(AlertRuleError, match=None) as info:
            load_rules(None, file)
        assert expected in str(info.value), text
    with pytest.raises(AlertRuleError, match="cannot read the alert rules"):
        load_rules(None, tmp_path / "missing.yaml")


def test_shipped_rules_load_and_defaults_apply() -> None:
    rules = {r.name: r for r in load_rules(None, REPO_RULES)}
    assert {"pipeline_wow", "customer_health_drop", "project_deadline_risk", "sync_failure", "source_freshness",
            "schema_change", "quarantined_rows", "job_failure", "support_volume_anomaly"} <= set(rules)
    assert rules["pipeline_wow"].threshold_pct == 10 and rules["pipeline_wow"].min_volume > 0
    assert rules["sync_failure"].cooldown == timedelta(days=1)  # from defaults
    assert rules["project_deadline_risk"].cooldown == timedelta(days=7)  # the rule's own value wins
    assert all(r.dashboard for r in rules.values())  # every alert links to a dashboard


def test_durations() -> None:
    assert parse_duration("2h") == timedelta(hours=2)
    assert parse_duration("30m") == parse_duration("30min") == parse_duration(1800)
    assert parse_duration("1w") == timedelta(days=7)
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("2 hours")


def test_config_check_and_alerts_check_name_the_bad_rule(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rules = tmp_path / "alerts.yaml"
    rules.write_text("rules:\n  - {name: pipe, kind: change, metric: pipeline_valu, threshold_pct: 10}\n")
    (tmp_path / "sophia.yaml").write_text(f"var_dir: {tmp_path / 'var'}\nalerts:\n  rules: {rules}\n")
    monkeypatch.setenv("SOPHIA_CONFIG", str(tmp_path / "sophia.yaml"))
    from sophia_lib.cli import app

    for argv in (["sophia", "config", "check"], ["sophia", "alerts", "check"]):
        monkeypatch.setattr("sys.argv", argv)
        with pytest.raises(SystemExit) as exit_info:
            app()
        assert exit_info.value.code == 2
    result = CliRunner().invoke(cli, ["alerts", "check"])
    assert "rule 'pipe', key 'metric': unknown metric 'pipeline_valu' — did you mean 'pipeline_value'" in str(
        result.exception)
    rules.write_text("rules:\n  - {name: pipe, kind: change, metric: pipeline_value, threshold_pct: 10}\n")
    ok = CliRunner().invoke(cli, ["alerts", "check"])
    assert ok.exit_code == 0 and "1 rule(s) OK" in ok.output


def test_rules_path_from_config(tmp_path: Path) -> None:
    config = SophiaConfig(var_dir=tmp_path, alerts={"rules": tmp_path / "x.yaml"})
    (tmp_path / "x.yaml").write_text("rules:\n  - {name: jobs, kind: job_failure, notify: ['email:a@b.co']}\n")
    assert [r.name for r in load_rules(config)] == ["jobs"]


def test_every_shipped_rule_links_to_a_registered_dashboard() -> None:
    import yaml

    registry = REPO_RULES.parents[1] / "notebooks" / "dashboards" / "dashboards.yaml"
    if not registry.is_file():
        pytest.skip("no dashboards registry in this checkout")
    slugs = {d["slug"] for d in yaml.safe_load(registry.read_text())["dashboards"]}
    assert {r.name: r.dashboard for r in load_rules(None, REPO_RULES) if r.dashboard not in slugs} == {}
