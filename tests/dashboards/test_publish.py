"""Publishing through the dashboards service: run as the audience first, refuse failures and forbidden reads
(showing the cell), validate slugs and ownership, keep versions, unpublish, audit — and masked PII."""

from __future__ import annotations

import time

import nbformat
import pytest
from sqlalchemy import select

from sophia_lib.appdb import open_app_db
from sophia_lib.appdb.models import AuditEntry
from sophia_lib.dashboards.client import publish_notebook, unpublish_dashboard
from sophia_lib.dashboards.publish import PublishError
from sophia_lib.warehouse import open_warehouse
from tests.dashboards.conftest import DashEnv, login

GOOD = """import sophia_lib as sl
from sophia_lib.dashboards import ui
data = ui.Data()
frame = data.metric("bookings", grain="quarter", by=["region"])
ui.chart(ui.bar(frame, "quarter", "bookings", "Bookings by region", color="region", unit="currency"))"""
FORBIDDEN = """import sophia_lib as sl
people = sl.table("core.people", columns=["email"])
people.head()"""
PII = """import sophia_lib as sl
from IPython.display import HTML, display
people = sl.table("core.people", columns=["full_name", "email"], limit=50)
display(HTML(people.to_html()))"""


def _notebook(tmp_path, name: str, *cells: str):
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    path = tmp_path / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


@pytest.fixture
def as_user(dash_env: DashEnv, dash_service, monkeypatch):
    def use(user: str) -> None:
        monkeypatch.setenv("SOPHIA_DASHBOARDS_URL", dash_env.prefix_url)
        monkeypatch.setenv("SOPHIA_DASHBOARDS_TOKEN", dash_env.tokens[user])
    return use


def test_an_analyst_publishes_and_an_executive_sees_it(dash_env: DashEnv, as_user, tmp_path) -> None:
    as_user("ana")
    result = publish_notebook(dash_env.config, _notebook(tmp_path, "q", GOOD), "Bookings by region",
                              ["sophia-executives"])
    assert (result["slug"], result["version"]) == ("bookings-by-region", 1)
    client = login(dash_env.hub, "vic")
    listing = client.get(f"{dash_env.prefix_url}api/dashboards").json()["dashboards"]
    mine = next(d for d in listing if d["slug"] == "bookings-by-region")
    assert mine["author"] == "ana" and mine["version"] == 1
    page = client.get(f"{dash_env.prefix_url}d/bookings-by-region/")
    assert page.status_code == 200 and "plotly-graph-div" in page.text
    # a second publish is a new version; the audit log has both
    assert publish_notebook(dash_env.config, _notebook(tmp_path, "q", GOOD), "Bookings by region",
                            ["sophia-executives"])["version"] == 2
    time.sleep(0.2)
    app_db = open_app_db(dash_env.config)
    try:
        with app_db.session() as s:
            publishes = s.scalars(select(AuditEntry).where(AuditEntry.action == "dashboard.publish",
                                                           AuditEntry.target == "bookings-by-region")).all()
    finally:
        app_db.close()
    assert [p.detail["version"] for p in publishes] == [1, 2]


def test_a_read_the_audience_may_not_see_refuses_the_publish(dash_env: DashEnv, as_user, tmp_path) -> None:
    as_user("ana")
    with pytest.raises(PublishError) as refused:
        publish_notebook(dash_env.config, _notebook(tmp_path, "pii", "x = 1", FORBIDDEN), "Contacts",
                         ["sophia-executives"])
    assert refused.value.cell_index == 1 and "core.people" in (refused.value.cell_source or "")
    assert "ForbiddenError" in refused.value.message
    assert "contacts" not in {d["slug"] for d in login(dash_env.hub, "vic").get(
        f"{dash_env.prefix_url}api/dashboards").json()["dashboards"]}


def test_analysts_see_masked_pii_in_a_published_page(dash_env: DashEnv, as_user, tmp_path) -> None:
    wh = open_warehouse(dash_env.config)
    try:
        with wh.reader() as r:
            emails = [e for e in r.query("select email from core.people where email is not null limit 200")
                      .column("email").to_pylist()]
    finally:
        wh.close()
    as_user("ana")
    publish_notebook(dash_env.config, _notebook(tmp_path, "people", PII), "People",
                     ["sophia-analysts", "sophia-developers"])
    client = login(dash_env.hub, "dev")
    page = client.get(f"{dash_env.prefix_url}d/people/")
    assert page.status_code == 200 and "<table" in page.text
    assert not [e for e in emails if e in page.text]


def test_bad_publishes_are_refused(dash_env: DashEnv, as_user, tmp_path) -> None:
    notebook = _notebook(tmp_path, "ok", GOOD)
    as_user("vic")
    with pytest.raises(PublishError, match="may not publish"):
        publish_notebook(dash_env.config, notebook, "Mine", ["sophia-executives"])
    as_user("ana")
    for slug in ("../../etc", "Sales EMEA", "a/b"):
        with pytest.raises(PublishError, match="not allowed|slug"):
            publish_notebook(dash_env.config, notebook, "x", ["sophia-executives"], slug=slug)
    with pytest.raises(PublishError, match="built-in"):
        publish_notebook(dash_env.config, notebook, "Sales", ["sophia-executives"])
    with pytest.raises(PublishError, match="unknown audience"):
        publish_notebook(dash_env.config, notebook, "Other", ["everyone"])
    publish_notebook(dash_env.config, notebook, "Ana only", ["sophia-executives"], slug="ana-only")
    as_user("dev")
    with pytest.raises(PublishError, match="belongs to ana"):
        publish_notebook(dash_env.config, notebook, "Taken", ["sophia-executives"], slug="ana-only")
    with pytest.raises(PublishError, match="belongs to ana"):
        unpublish_dashboard(dash_env.config, "ana-only")
    as_user("ana")
    assert unpublish_dashboard(dash_env.config, "ana-only")["unpublished_version"] == 1
    assert login(dash_env.hub, "vic").get(f"{dash_env.prefix_url}d/ana-only/").status_code == 404


def test_sophia_publish_on_the_command_line(dash_env: DashEnv, as_user, tmp_path) -> None:
    from typer.testing import CliRunner

    from sophia_lib.cli import cli

    as_user("ana")
    notebook = _notebook(tmp_path, "cli", GOOD)
    runner = CliRunner()
    result = runner.invoke(cli, ["publish", str(notebook), "--title", "From the CLI", "--audience",
                                 "sophia-executives,sophia-analysts"])
    assert result.exit_code == 0, result.output
    assert "published from-the-cli v1" in result.output
    result = runner.invoke(cli, ["publish", str(_notebook(tmp_path, "bad", "1/0")), "--title", "Broken",
                                 "--audience", "sophia-executives"])
    assert result.exit_code == 1 and "ZeroDivisionError" in result.output and "1/0" in result.output
