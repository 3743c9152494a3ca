"""Developer tool: ``python -m sophia_lib.appdb revision -m "add x to y"`` writes the next migration.

It migrates a scratch SQLite database to the current head, then lets Alembic compare the models
with it. Review the generated file (and try it on PostgreSQL: ``tests/test_appdb.py`` does).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from alembic import command
from alembic.script import ScriptDirectory

from sophia_lib.appdb.engine import alembic_config, make_engine, upgrade


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m sophia_lib.appdb")
    sub = parser.add_subparsers(dest="command", required=True)
    rev = sub.add_parser("revision", help="autogenerate the next migration from the models")
    rev.add_argument("-m", "--message", required=True, help="what the migration changes")
    up = sub.add_parser("upgrade", help="upgrade a database to the newest migration")
    up.add_argument("url", help="SQLAlchemy URL of the app database")
    args = parser.parse_args(argv)
    if args.command == "upgrade":
        print(upgrade(args.url))
        return
    with tempfile.TemporaryDirectory() as scratch:
        url = f"sqlite:///{Path(scratch) / 'app.db'}"
        upgrade(url)
        engine = make_engine(url)
        with engine.connect() as conn:
            count = len(list(ScriptDirectory.from_config(alembic_config()).walk_revisions()))
            command.revision(alembic_config(conn), args.message, autogenerate=True, rev_id=f"{count + 1:04d}")
        engine.dispose()


if __name__ == "__main__":
    main()
