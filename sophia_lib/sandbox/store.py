"""Cache a generated company on disk (parquet per table + ``manifest.json``) and export its ground truth.

The manifest carries seed, size, ``now`` and a content hash over every table's parquet bytes, so two
companies are the same data exactly when their hashes agree.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pandas as pd

from sophia_lib.errors import ConfigError
from sophia_lib.sandbox.company import SCHEMA, Company

MANIFEST = "manifest.json"
FORMAT_VERSION = 1
LIST_COLUMNS = {"calls": ["participant_person_ids", "topics"], "conversations": ["tags"]}


def table_bytes(frame: pd.DataFrame) -> bytes:
    """The parquet bytes of one table (deterministic for the same data and library versions)."""
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False, engine="pyarrow", compression="zstd")
    return buf.getvalue()


def table_hashes(company: Company) -> dict[str, str]:
    return {
        name: hashlib.sha256(table_bytes(frame)).hexdigest() for name, frame in sorted(company.tables.items())
    }


def content_hash(company: Company) -> str:
    """One sha256 over every table's parquet bytes, tables in name order."""
    h = hashlib.sha256()
    for name, digest in table_hashes(company).items():
        h.update(name.encode())
        h.update(digest.encode())
    return h.hexdigest()


def save(company: Company, path: str | Path) -> Path:
    """Write ``<path>/<table>.parquet`` for every table and ``<path>/manifest.json``."""
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    rows = {}
    for name in sorted(company.tables):
        data = table_bytes(company.tables[name])
        (folder / f"{name}.parquet").write_bytes(data)
        digest.update(name.encode())
        digest.update(hashlib.sha256(data).hexdigest().encode())
        rows[name] = len(company.tables[name])
    manifest = {
        "format": FORMAT_VERSION,
        "seed": company.seed,
        "size": company.size,
        "now": company.now.isoformat(),
        "content_hash": digest.hexdigest(),
        "rows": rows,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return folder


def read_manifest(path: str | Path) -> dict:
    file = Path(path) / MANIFEST
    if not file.is_file():
        raise ConfigError(
            f"no cached sandbox company at {Path(path)} (missing {MANIFEST}).",
            fix="run 'sophia sandbox generate' first, or pass the folder it wrote with --dir",
        )
    return json.loads(file.read_text())


def load(path: str | Path) -> Company:
    """Read a company written by :func:`save`; list columns come back as Python lists."""
    folder = Path(path)
    manifest = read_manifest(folder)
    tables: dict[str, pd.DataFrame] = {}
    for name in manifest["rows"]:
        file = folder / f"{name}.parquet"
        if not file.is_file():
            raise ConfigError(
                f"sandbox cache {folder} lacks {file.name}.",
                fix="delete the folder and run 'sophia sandbox generate' again",
            )
        frame = pd.read_parquet(file, engine="pyarrow")
        for col in LIST_COLUMNS.get(name, []):
            frame[col] = pd.Series(
                [list(v) if isinstance(v, np.ndarray | list) else [] for v in frame[col]], dtype=object
            )
        tables[name] = frame
    return Company(
        seed=int(manifest["seed"]),
        size=str(manifest["size"]),
        now=pd.Timestamp(manifest["now"]),
        tables={name: tables[name] for name in SCHEMA if name in tables}
        | {n: t for n, t in tables.items() if n not in SCHEMA},
    )


def truth(company: Company) -> dict[str, pd.DataFrame]:
    """Ground truth to score entity resolution, models and alerts against."""
    labels = company.tables["labels"]
    churn = labels[labels["label"].isin(["churned", "churn_driver", "churn_probability", "health_collapse"])]
    churn = churn.pivot_table(
        index="entity_id", columns="label", values="value", aggfunc="first"
    ).reset_index()
    churn.columns.name = None
    churn = churn.rename(columns={"entity_id": "account_id"})
    acc = company.tables["accounts"][["account_id", "name", "segment", "customer_since", "churned_at"]]
    churn = acc.merge(churn, on="account_id", how="inner")
    return {
        "entity_map": company.tables["presence"].copy(),
        "churn_labels": churn,
        "anomalies": company.tables["anomalies"].copy(),
        "labels": labels.copy(),
    }


def export_truth(company: Company, folder: str | Path) -> list[Path]:
    """Write each :func:`truth` frame as ``<folder>/<name>.parquet``; returns the files written."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, frame in truth(company).items():
        file = out / f"{name}.parquet"
        frame.to_parquet(file, index=False)
        written.append(file)
    return written
