"""The audit log: hash chain, append-only triggers, tamper detection (by someone with DB access who drops
the triggers), concurrent writers on one chain, and the `sophia audit` commands."""

from __future__ import annotations

import json
import multiprocessing
import sqlite3
import threading

import pytest
from typer.testing import CliRunner

from sophia_lib.appdb import open_app_db
from sophia_lib.audit import AuditEvent, AuditLog, AuditWriter, canonical, chain_hash, verify
from sophia_lib.cli import cli
from sophia_lib.config import load_config


@pytest.fixture
def log() -> AuditLog:
    log = AuditLog(open_app_db(load_config()))
    log.append_many([AuditEvent(f"user{i}", "query.sql", "analyst", "core.people",
                                {"rows": i, "columns": ["email"], "cached": False}) for i in range(1, 8)])
    return log


def _db(log: AuditLog) -> sqlite3.Connection:
    """The attacker's view: the SQLite file, with the append-only triggers dropped."""
    con = sqlite3.connect(log.app_db.engine.url.database, isolation_level=None)
    con.execute("DROP TRIGGER audit_log_no_update")
    con.execute("DROP TRIGGER audit_log_no_delete")
    return con


def test_intact_chain_verifies(log: AuditLog) -> None:
    result = verify(log)
    assert result.ok and result.checked == 7 and result.last_seq == 7


def test_database_refuses_update_and_delete(log: AuditLog) -> None:
    con = sqlite3.connect(log.app_db.engine.url.database)
    for statement in ("UPDATE audit_log SET actor = 'x'", "DELETE FROM audit_log"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            con.execute(statement)


@pytest.mark.parametrize(("attack", "bad_seq", "words"), [
    ("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3", 3, "was edited"),
    ("UPDATE audit_log SET detail = json_set(detail, '$.rows', 0) WHERE seq = 5", 5, "was edited"),
    ("DELETE FROM audit_log WHERE seq = 4", 5, "missing (deleted)"),
    ("DELETE FROM audit_log WHERE seq = 7", 7, "were deleted"),
    ("UPDATE audit_log SET seq = seq + 100 WHERE seq >= 4", 104, "missing"),
])
def test_tampering_is_detected_naming_the_first_bad_record(log: AuditLog, attack: str, bad_seq: int,
                                                          words: str) -> None:
    _db(log).execute(attack)
    result = verify(log)
    assert not result.ok and result.bad_seq == bad_seq and words in (result.problem or "")


def test_inserted_record_is_detected(log: AuditLog) -> None:
    con = _db(log)
    con.execute("UPDATE audit_log SET seq = seq + 1000 WHERE seq >= 4")
    con.execute("UPDATE audit_log SET seq = seq - 999 WHERE seq >= 1000")
    con.execute("INSERT INTO audit_log (seq, at, actor, role, action, target, detail, prev_hash, hash) "
                "SELECT 4, at, 'ghost', role, action, target, detail, hash, printf('%064d', 42) "
                "FROM audit_log WHERE seq = 3")
    result = verify(log)
    assert not result.ok and result.bad_seq == 4


def test_a_recomputed_chain_is_caught_by_the_head_anchor(log: AuditLog) -> None:
    """An attacker who rewrites a record and recomputes every later hash still breaks the anchor."""
    con = _db(log)
    rows = con.execute("SELECT seq, at, actor, role, action, target, detail FROM audit_log ORDER BY seq").fetchall()
    prev = "0" * 64
    entries = {e.seq: e for e in log.entries()}
    for seq, _at, actor, role, action, target, detail in rows:
        actor = "someone-else" if seq == 2 else actor
        digest = chain_hash(prev, canonical(seq, entries[seq].at, actor, role, action, target, json.loads(detail)))
        con.execute("UPDATE audit_log SET actor = ?, prev_hash = ?, hash = ? WHERE seq = ?", (actor, prev, digest, seq))
        prev = digest
    result = verify(log)
    assert not result.ok and "recomputed" in (result.problem or "")


def test_concurrent_writers_keep_one_chain(log: AuditLog) -> None:
    writer = AuditWriter(log)
    futures = []

    def submit(n: int) -> None:
        for i in range(25):
            futures.append(writer.submit(AuditEvent(f"t{n}", "query.table", detail={"i": i})))

    threads = [threading.Thread(target=submit, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f in futures:
        f.result(timeout=30)
    writer.close()
    procs = [multiprocessing.get_context("spawn").Process(target=_append_from_process, args=(p,)) for p in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    result = verify(log)
    assert result.ok and result.checked == 7 + 200 + 2 * 30


def _append_from_process(n: int) -> None:
    other = AuditLog(open_app_db(load_config()))
    for i in range(30):
        other.append(AuditEvent(f"proc{n}", "query.sql", detail={"i": i}))


def test_cli_verify_and_export(log: AuditLog, tmp_path) -> None:
    runner = CliRunner()
    ok = runner.invoke(cli, ["audit", "verify"])
    assert ok.exit_code == 0 and "intact: 7 record(s)" in ok.output
    exported = runner.invoke(cli, ["audit", "export", "--format", "jsonl"])
    lines = [json.loads(line) for line in exported.stdout.splitlines() if line.startswith("{")]
    assert [r["seq"] for r in lines] == list(range(1, 8)) and lines[0]["detail"]["columns"] == ["email"]
    out = tmp_path / "audit.csv"
    assert runner.invoke(cli, ["audit", "export", "--format", "csv", "-o", str(out)]).exit_code == 0
    assert out.read_text().splitlines()[0] == "seq,at,actor,role,action,target,detail,prev_hash,hash"
    assert runner.invoke(cli, ["audit", "export", "--format", "xml"]).exit_code == 2
    _db(log).execute("UPDATE audit_log SET target = 'marts.other' WHERE seq = 6")
    bad = runner.invoke(cli, ["audit", "verify"])
    assert bad.exit_code == 1 and "TAMPERED at record 6" in bad.output
