"""An analyst's server: spawned by the hub, JupyterLab with the Sophia kernel and the starter notebook, and
code in its kernel that knows who it runs as from the hub — not from anything the kernel can set."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import nbformat
import pytest

from sophia_lib.hub.spawners import STARTER_NOTEBOOKS
from tests.hub.flows import api, login
from tests.hub.harness import RunningHub, run_in_kernel, wait_for_server


@pytest.fixture(scope="module")
def alan(hub: RunningHub) -> Iterator[httpx.Client]:
    """Alan signed in with his server running and opened once (the server's OAuth cookie)."""
    client, _ = login(hub.url, "alan")
    assert api(client, hub.url, "POST", "/users/alan/server", json={}).status_code in (201, 202)
    wait_for_server(client, hub.url, "alan")
    yield client
    api(client, hub.url, "DELETE", "/users/alan/server")


def test_the_analyst_reaches_jupyterlab_with_the_sophia_kernel_and_the_starter_notebook(
        hub: RunningHub, alan: httpx.Client) -> None:
    lab = alan.get(f"{hub.url}/user/alan/lab")
    assert lab.status_code == 200 and "JupyterLab" in lab.text
    specs = alan.get(f"{hub.url}/user/alan/api/kernelspecs").json()
    assert specs["default"] == "sophia-cpu"
    assert specs["kernelspecs"]["sophia-cpu"]["spec"]["display_name"] == "Sophia (CPU)"
    notebook = alan.get(f"{hub.url}/user/alan/api/contents/explore/start-here.ipynb")
    assert notebook.status_code == 200 and notebook.json()["type"] == "notebook"
    assert (hub.folder / "var" / "hub" / "home" / "alan" / "explore" / "start-here.ipynb").exists()


def test_the_starter_notebook_runs_in_the_analysts_kernel_as_the_analyst(hub: RunningHub,
                                                                         alan: httpx.Client) -> None:
    cells = nbformat.read(STARTER_NOTEBOOKS / "start-here.ipynb", as_version=4).cells
    code = "\n".join(c.source for c in cells if c.cell_type == "code")
    out, errors = run_in_kernel(alan, hub.url, "alan", code)
    assert not errors, errors
    assert "signed in as alan (analyst; groups: sophia-analysts)" in out
    assert f"query door: {hub_query_url(hub)}" in out
    assert "dataframe engine: pandas" in out


def test_nothing_in_the_kernels_environment_changes_who_it_runs_as(hub: RunningHub, alan: httpx.Client) -> None:
    code = ("import os\n"
            "assert os.environ['JUPYTERHUB_API_TOKEN'] and os.environ['SOPHIA_QUERY_URL']\n"
            "os.environ['JUPYTERHUB_USER'] = 'ada'\n"
            "os.environ['JUPYTERHUB_GROUP'] = 'sophia-super-users'\n"
            "from sophia_lib.hub.identity import whoami\n"
            "print('as', whoami())\n")
    out, errors = run_in_kernel(alan, hub.url, "alan", code)
    assert not errors, errors
    assert "as alan (analyst; groups: sophia-analysts)" in out


def test_an_executive_is_refused_at_a_running_server(hub: RunningHub, alan: httpx.Client) -> None:
    erin, _ = login(hub.url, "erin")
    refused = erin.get(f"{hub.url}/user/alan/lab")
    assert refused.status_code == 403 and "JupyterLab" not in refused.text


def hub_query_url(hub: RunningHub) -> str:
    from sophia_lib.config import load_config
    from sophia_lib.hub.services import query_url

    return query_url(load_config(hub.config_file))


def test_sophia_lib_in_the_kernel_reads_through_the_query_door_with_the_analysts_view(
        hub: RunningHub, alan: httpx.Client) -> None:
    from tests.hub.conftest import PEOPLE

    code = ("from sophia_lib.query.client import QueryClient\n"
            "client = QueryClient()\n"
            "me = client.whoami()\n"
            "print('door says', me['user'], me['role'])\n"
            "people = client.sql('select person_key, email, full_name from core.people order by person_key')\n"
            "print('rows', len(people))\n"
            "for row in people.itertuples():\n"
            "    print('row', row.person_key, row.email, row.full_name)\n")
    out, errors = run_in_kernel(alan, hub.url, "alan", code)
    assert not errors, errors
    assert "door says alan analyst" in out
    assert "rows 2" in out and out.count("row p") == 2 and "None" not in out  # masked, not dropped
    for email, name in zip(PEOPLE["email"], PEOPLE["full_name"], strict=True):
        assert email not in out and name not in out  # the analyst's policy masks contact PII, server-side
