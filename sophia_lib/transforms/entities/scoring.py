"""Pairwise precision and recall of a resolution against a ground-truth entity map.

A pair is two source records (``system``, ``system_id``). Precision: of the pairs the resolution put in
one cluster, the share that truly are one entity; recall: of the true pairs, the share it put together.
Truth records the resolution lacks count as alone (their pairs are missed); resolved records the truth
lacks are left out (nothing to score them against).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class Score:
    precision: float
    recall: float
    true_pairs: int
    predicted_pairs: int
    correct_pairs: int
    records: int
    records_found: int

    @property
    def f1(self) -> float:
        total = self.precision + self.recall
        return 0.0 if total == 0 else 2 * self.precision * self.recall / total

    def __str__(self) -> str:
        return (f"precision {self.precision:.4f} recall {self.recall:.4f} f1 {self.f1:.4f} "
                f"(pairs: {self.correct_pairs} correct / {self.predicted_pairs} predicted / {self.true_pairs} true; "
                f"records found {self.records_found}/{self.records})")


def _pairs(sizes: pd.Series) -> int:
    return int((sizes * (sizes - 1) // 2).sum())


def pairwise_score(truth: pd.DataFrame, predicted: pd.DataFrame, key: str) -> Score:
    """``truth``: ``system, system_id, entity_id``; ``predicted``: ``system, system_id, <key>``."""
    truth = truth[["system", "system_id", "entity_id"]].astype("string").drop_duplicates(["system", "system_id"])
    pred = predicted[["system", "system_id", key]].astype("string").drop_duplicates(["system", "system_id"])
    joined = truth.merge(pred, on=["system", "system_id"], how="left")
    found = int(joined[key].notna().sum())
    joined[key] = joined[key].fillna("missing:" + joined["system"] + ":" + joined["system_id"])
    true_pairs = _pairs(joined.groupby("entity_id").size())
    predicted_pairs = _pairs(joined.groupby(key).size())
    correct = _pairs(joined.groupby(["entity_id", key]).size())
    return Score(precision=correct / predicted_pairs if predicted_pairs else 1.0,
                 recall=correct / true_pairs if true_pairs else 1.0, true_pairs=true_pairs,
                 predicted_pairs=predicted_pairs, correct_pairs=correct, records=len(joined), records_found=found)
