"""One real hub for all the hub tests that only sign in, spawn and look (session-scoped: starting it costs seconds)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.hub.harness import RunningHub, sophia_hub


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningHub]:
    folder = tmp_path_factory.mktemp("hub")
    seed_warehouse(folder / "var")
    seed_dashboards(folder / "var")
    with sophia_hub(folder) as running:
        yield running


def seed_dashboards(var_dir) -> None:
    """Two published dashboards: one for executives, one for analysts only."""
    from sophia_lib.appdb import open_app_db
    from sophia_lib.appdb.models import PublishedDashboard
    from sophia_lib.config import SophiaConfig

    app_db = open_app_db(SophiaConfig(var_dir=var_dir))
    try:
        with app_db.session() as session:
            session.add(PublishedDashboard(slug="revenue", title="Revenue overview", author="alan",
                                           audience_groups=["sophia-executives", "sophia-analysts"],
                                           notebook_path="dashboards/revenue.ipynb"))
            session.add(PublishedDashboard(slug="pipeline-qa", title="Pipeline QA", author="alan",
                                           audience_groups=["sophia-analysts"],
                                           notebook_path="dashboards/pipeline-qa.ipynb"))
    finally:
        app_db.close()


PEOPLE = {"person_key": ["p1", "p2"], "full_name": ["Jane Roe", "John Poe"],
          "email": ["jane.roe@acme.example", "john.poe@globex.example"], "title": ["CFO", "VP Sales"]}


def seed_warehouse(var_dir) -> None:
    """A published snapshot with one small core table, so the query service has something to serve."""
    import pandas as pd

    from sophia_lib.config import SophiaConfig
    from sophia_lib.warehouse import open_warehouse

    warehouse = open_warehouse(SophiaConfig(var_dir=var_dir))
    try:
        warehouse.publish(lambda builder: builder.write_table("core", "people", pd.DataFrame(PEOPLE)))
    finally:
        warehouse.close()
