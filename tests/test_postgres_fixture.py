import psycopg
import pytest

pytestmark = pytest.mark.postgres


def test_real_server_answers(postgres_url: str) -> None:
    with psycopg.connect(postgres_url.replace("postgresql+psycopg://", "postgresql://")) as conn:
        assert conn.execute("select 1 + 1").fetchone() == (2,)
