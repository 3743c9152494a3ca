"""Connected components over match edges, and the stable keys of the clusters they form.

Records are rows ``0..n-1``; a match rule contributes edges between rows. Same-key groups are linked as
stars (every row to the group's first row), so a group of k rows costs k-1 edges, never k².
"""

from __future__ import annotations

import hashlib

import numpy as np
import pandas as pd


def components(n: int, edges: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """Component label (the smallest row number in it) of every row, by min-label propagation with pointer
    jumping: O(edges × log n) vectorised, deterministic."""
    labels = np.arange(n, dtype=np.int64)
    if not edges:
        return labels
    a = np.concatenate([np.asarray(e[0], dtype=np.int64) for e in edges])
    b = np.concatenate([np.asarray(e[1], dtype=np.int64) for e in edges])
    while True:
        low = np.minimum(labels[a], labels[b])
        new = labels.copy()
        np.minimum.at(new, a, low)
        np.minimum.at(new, b, low)
        while True:
            jumped = new[new]
            if np.array_equal(jumped, new):
                break
            new = jumped
        if np.array_equal(new, labels):
            return labels
        labels = new


def star_edges(keys: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Edges linking every row with a non-null key to the first row (in row order) holding the same key."""
    frame = pd.DataFrame({"key": keys.to_numpy(dtype=object), "row": np.arange(len(keys))})
    frame = frame[frame["key"].notna()]
    first = frame.groupby("key", sort=False)["row"].transform("min")
    linked = frame["row"] != first
    return first[linked].to_numpy(dtype=np.int64), frame.loc[linked, "row"].to_numpy(dtype=np.int64)


def stable_keys(prefix: str, anchors: pd.Series) -> pd.Series:
    """``prefix`` + 16 hex digits of SHA-1 of each anchor string (``system:system_id``): the same source
    record gives the same key at every refresh, and no source id (which may be an e-mail) shows in it."""
    unique = pd.unique(anchors.to_numpy(dtype=object))
    digest = {a: prefix + hashlib.sha1(str(a).encode()).hexdigest()[:16] for a in unique}  # noqa: S324 - not security
    return anchors.map(digest).astype("string")


def cluster_keys(prefix: str, labels: np.ndarray, system: pd.Series, system_id: pd.Series,
                 priority: dict[str, int]) -> pd.Series:
    """The key of each row's cluster, derived from its anchor: the row of the highest-priority system
    (then the smallest id) in the cluster."""
    frame = pd.DataFrame({
        "label": labels,
        "rank": system.map(priority).fillna(len(priority)).astype(int).to_numpy(),
        "anchor": (system.astype(str) + ":" + system_id.astype(str)).to_numpy(dtype=object),
    })
    ordered = frame.sort_values(["label", "rank", "anchor"], kind="stable")
    anchor = ordered.groupby("label", sort=False)["anchor"].first()
    return stable_keys(prefix, frame["label"].map(anchor)).reset_index(drop=True)
