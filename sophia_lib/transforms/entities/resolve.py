"""Shared machinery of the three resolutions: source records in, clusters with stable keys, xref rows and
one surviving value per attribute out."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from sophia_lib.transforms.entities.cluster import cluster_keys, components

SINGLE = "single_source"  # match_rule of a record no rule linked to any other


@dataclass
class Matches:
    """Edges between record rows, by the rule that found them, strongest rule first."""

    edges: dict[str, list[tuple[np.ndarray, np.ndarray]]] = field(default_factory=dict)

    def add(self, rule: str, edge: tuple[np.ndarray, np.ndarray]) -> None:
        self.edges.setdefault(rule, []).append(edge)


def resolve(records: pd.DataFrame, matches: Matches, *, prefix: str, key: str, priority: Sequence[str],
            confidence: dict[str, float]) -> pd.DataFrame:
    """``records`` (one row per source record: ``system``, ``system_id``, …) with ``key`` (its cluster's
    stable key), ``match_rule`` (the strongest rule that linked the record) and ``confidence`` added, plus
    ``_rank`` (system priority, for survivorship)."""
    records = records.reset_index(drop=True)
    n = len(records)
    all_edges = [e for rule in matches.edges.values() for e in rule]
    labels = components(n, all_edges)
    ranks = {system: i for i, system in enumerate(priority)}
    out = records.copy()
    out[key] = cluster_keys(prefix, labels, records["system"], records["system_id"], ranks).to_numpy()
    rule = np.full(n, SINGLE, dtype=object)
    assigned = np.zeros(n, dtype=bool)
    for name, edges in matches.edges.items():
        touched = np.zeros(n, dtype=bool)
        for a, b in edges:
            touched[np.asarray(a, dtype=np.int64)] = True
            touched[np.asarray(b, dtype=np.int64)] = True
        fresh = touched & ~assigned
        rule[fresh] = name
        assigned |= fresh
    sizes = pd.Series(labels).map(pd.Series(labels).value_counts()).to_numpy()
    rule[sizes == 1] = SINGLE
    out["match_rule"] = pd.array(rule, dtype="string")
    out["confidence"] = pd.Series(rule).map({**confidence, SINGLE: 1.0}).astype(float).to_numpy()
    out["_rank"] = records["system"].map(ranks).fillna(len(ranks)).astype(int).to_numpy()
    return out


def survive(resolved: pd.DataFrame, key: str, columns: Sequence[str],
            order: Sequence[str] = ("_rank",)) -> pd.DataFrame:
    """One row per ``key``: each column's first non-null value in system priority order (then ``order``)."""
    ordered = resolved.sort_values([key, *order], kind="stable")
    return ordered.groupby(key, sort=True)[list(columns)].first()


def most_common(resolved: pd.DataFrame, key: str, column: str) -> pd.Series:
    """One value per ``key``: the value most of its records agree on (ties: system priority). Systems that
    decorate a value differently (legal-form variants of a name) are outvoted by those that agree."""
    part = resolved.loc[resolved[column].notna(), [key, column, "_rank"]]
    votes = part.groupby([key, column], sort=False).agg(n=("_rank", "size"), best=("_rank", "min")).reset_index()
    votes = votes.sort_values([key, "n", "best"], ascending=[True, False, True], kind="stable")
    return votes.drop_duplicates(key).set_index(key)[column]


def source_list(resolved: pd.DataFrame, key: str, priority: Sequence[str]) -> pd.Series:
    """Comma-joined systems each cluster was seen in, in priority order (systems outside it after, by name).
    One vectorised pass per system rather than a Python join per cluster."""
    seen = resolved[[key, "system"]].dropna(subset=[key])
    codes, uniques = pd.factorize(seen[key], sort=True)
    system = seen["system"].to_numpy(dtype=object)
    out = pd.Series("", index=pd.Index(uniques, name=key), dtype="string")
    for name in [*priority, *sorted(set(system[pd.notna(system)]) - set(priority))]:
        present = np.zeros(len(out), dtype=bool)
        present[codes[system == name]] = True
        out = out.where(~present, out + "," + name)
    return out.str.slice(1)


def system_ids(resolved: pd.DataFrame, key: str, system: str) -> pd.Series:
    """The id of each cluster's (first, by id) record in ``system``."""
    part = resolved.loc[resolved["system"] == system, [key, "system_id"]].sort_values([key, "system_id"])
    return part.groupby(key, sort=True)["system_id"].first()


def xref(resolved: pd.DataFrame, key: str, with_confidence: bool = True) -> pd.DataFrame:
    columns = [key, "system", "system_id", "match_rule", *(["confidence"] if with_confidence else [])]
    frame = resolved[columns].drop_duplicates([key, "system", "system_id"])
    return frame.sort_values([key, "system", "system_id"]).reset_index(drop=True)

