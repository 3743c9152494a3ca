"""Fuzzy fallback on normalised names: character-trigram Jaccard similarity, blocked by the first three
characters.

Only pairs sharing their first three characters are compared (``umbrela holdings`` vs ``umbrella
holdings``), so the work grows with the block sizes, not with n²; everything is joins and group-bys, no
Python loop over pairs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def trigrams(keys: pd.Series) -> pd.DataFrame:
    """``(row, gram)`` for the distinct character trigrams of each key, padded with spaces at both ends."""
    padded = ("  " + keys.astype("string") + " ").to_numpy(dtype=object)
    grams = [sorted({k[i:i + 3] for i in range(len(k) - 2)}) if isinstance(k, str) else [] for k in padded]
    frame = pd.DataFrame({"row": keys.index.to_numpy(), "gram": grams}).explode("gram").dropna()
    return frame.astype({"row": np.int64, "gram": "string"})


def similarity_pairs(keys: pd.Series, query: np.ndarray, candidate: np.ndarray) -> pd.DataFrame:
    """``(q, c, sim)`` for every query row and candidate row whose keys share their first three characters."""
    keys = keys.reset_index(drop=True).astype("string")
    block = keys.str[:3]
    q = pd.DataFrame({"q": np.flatnonzero(query)})
    q["block"] = block.iloc[q["q"]].to_numpy()
    c = pd.DataFrame({"c": np.flatnonzero(candidate)})
    c["block"] = block.iloc[c["c"]].to_numpy()
    pairs = q.dropna().merge(c.dropna(), on="block")[["q", "c"]]
    pairs = pairs[pairs["q"] != pairs["c"]]
    if pairs.empty:
        return pd.DataFrame({"q": [], "c": [], "sim": []})
    rows = np.union1d(pairs["q"].unique(), pairs["c"].unique())
    grams = trigrams(keys.iloc[rows])
    size = grams.groupby("row").size()
    shared = pairs.merge(grams.rename(columns={"row": "q"}), on="q").merge(
        grams.rename(columns={"row": "c"}), on=["c", "gram"])
    inter = shared.groupby(["q", "c"]).size().rename("inter").reset_index()
    pairs = pairs.merge(inter, on=["q", "c"], how="left").fillna({"inter": 0})
    union = pairs["q"].map(size).fillna(0) + pairs["c"].map(size).fillna(0) - pairs["inter"]
    pairs["sim"] = (pairs["inter"] / union.where(union > 0)).fillna(0.0)
    return pairs[["q", "c", "sim"]]


def best_matches(keys: pd.Series, query: np.ndarray, candidate: np.ndarray,
                 threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Edges ``(candidate, query)`` linking each query row to its most similar candidate, where that
    similarity is ≥ ``threshold`` and no candidate with another name is as close (a tie between two
    names is ambiguous: no edge; candidates with the same name are linked all)."""
    pairs = similarity_pairs(keys, query, candidate)
    pairs = pairs[pairs["sim"] >= threshold]
    if pairs.empty:
        return np.array([], dtype=np.int64), np.array([], dtype=np.int64)
    pairs = pairs.assign(name=keys.reset_index(drop=True).astype("string").iloc[pairs["c"]].to_numpy())
    top = pairs[pairs["sim"] == pairs.groupby("q")["sim"].transform("max")]
    names = top.groupby("q")["name"].transform("nunique")
    best = top[names == 1]
    return best["c"].to_numpy(dtype=np.int64), best["q"].to_numpy(dtype=np.int64)
