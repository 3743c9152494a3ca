"""The shipped policy.yaml against the real core and marts (the transforms' build on the small sandbox):
an analyst and an executive viewer reading every table they may read see no contact's e-mail or phone."""

from __future__ import annotations

import pyarrow as pa
import pytest

from sophia_lib.query.door import QueryDoor, QueryRequest
from sophia_lib.query.identity import Identity
from sophia_lib.warehouse import build_all, open_warehouse


@pytest.fixture(scope="module")
def real_door(synced_sandbox, tmp_path_factory):
    import sophia_lib.transforms  # noqa: F401 - registers the build steps

    config = synced_sandbox.copy_to(tmp_path_factory.mktemp("shipped") / "var")
    wh = open_warehouse(config)
    try:
        wh.publish(build_all)
        with wh.reader() as r:
            contacts = r.query("select lower(email) as e, phone as p from raw_salesforce.contact "
                               "union all select lower(email), phone from raw_hubspot.contacts").to_pydict()
    finally:
        wh.close()
    door = QueryDoor(config)
    yield door, {v for v in contacts["e"] if v}, {v for v in contacts["p"] if v and len(v) > 6}
    door.close()


@pytest.mark.parametrize("role", ["analyst", "executive_viewer"])
def test_no_contact_email_or_phone_in_any_readable_table(real_door, role: str) -> None:
    door, emails, phones = real_door
    identity = Identity("t", role, ())
    listed = door.tables(identity)
    assert listed, "no readable tables"
    for entry in listed:
        result = door.run(identity, QueryRequest("table", name=entry["name"]))
        table = pa.ipc.open_stream(result.body).read_all()
        for column in table.column_names:
            values = {str(v).lower() for v in table.column(column).to_pylist() if isinstance(v, str)}
            assert not values & emails, f"{entry['name']}.{column} shows contact e-mails to {role}"
            assert not values & phones, f"{entry['name']}.{column} shows contact phones to {role}"
