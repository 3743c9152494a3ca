"""The query door honours a declared audience only from a trusted service's token, and reads a viewer's
sign-in token (live mode) as that viewer. Each test fails if the check it names is removed."""

from __future__ import annotations

import pytest

from sophia_lib.query.client import QueryClient
from sophia_lib.query.errors import ForbiddenError, NoRoleError, NotAuthenticatedError
from tests.dashboards.conftest import DASH_TOKEN, QUERY_TOKEN, DashEnv


def test_a_trusted_service_reads_as_its_declared_audience(dash_env: DashEnv) -> None:
    executive = QueryClient(dash_env.query_url, DASH_TOKEN, audience="sophia-executives")
    who = executive.whoami()
    assert (who["user"], who["role"], who["kind"], who["via"]) == ("dashboards", "executive_viewer", "job",
                                                                    "dashboards")
    assert len(executive.table("marts.bookings", limit=5)) == 5
    with pytest.raises(ForbiddenError):  # executives read marts only
        executive.table("core.people", limit=1)
    emea = QueryClient(dash_env.query_url, DASH_TOKEN, audience="sophia-executives,sophia-region-emea")
    regions = set(emea.sql("select distinct region from marts.bookings")["region"].str.lower())
    assert regions == {"emea"}


def test_a_service_without_audience_or_untrusted_reads_nothing(dash_env: DashEnv) -> None:
    with pytest.raises(NoRoleError, match="declared no audience"):
        QueryClient(dash_env.query_url, DASH_TOKEN, audience="").whoami()
    with pytest.raises((NoRoleError, NotAuthenticatedError)):  # the query service's own token is not trusted
        QueryClient(dash_env.query_url, QUERY_TOKEN, audience="sophia-super-users").whoami()
    with pytest.raises(NoRoleError, match="no Sophia group"):
        QueryClient(dash_env.query_url, DASH_TOKEN, audience="some-other-team").whoami()


def test_an_audience_sent_with_a_person_s_token_is_ignored(dash_env: DashEnv) -> None:
    analyst = QueryClient(dash_env.query_url, dash_env.tokens["ana"], audience="sophia-super-users")
    who = analyst.whoami()
    assert (who["user"], who["role"]) == ("ana", "analyst")
    with pytest.raises(ForbiddenError):
        analyst.table("raw_salesforce.contact", limit=1)


def test_a_viewer_token_reads_under_the_viewer_s_own_policy(dash_env: DashEnv) -> None:
    """A token with dashboards access but no query access (what live kernels get) is the viewer, no one else."""
    viewer = QueryClient(dash_env.query_url, dash_env.tokens["vic"])
    who = viewer.whoami()
    assert (who["user"], who["role"], who["kind"]) == ("vic", "executive_viewer", "viewer")
    with pytest.raises(ForbiddenError):
        viewer.table("core.people", limit=1)
    nobody = QueryClient(dash_env.query_url, dash_env.tokens["nobody"])
    with pytest.raises(NoRoleError):
        nobody.whoami()


def test_a_token_with_neither_scope_is_refused(dash_env: DashEnv) -> None:
    token = dash_env.hub.token_for("vic", scopes=["read:users:name!user=vic"])
    with pytest.raises(NotAuthenticatedError, match="lacks the scope"):
        QueryClient(dash_env.query_url, token).whoami()
