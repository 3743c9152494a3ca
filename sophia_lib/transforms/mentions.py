"""What a chat message refers to: customer accounts (by name or domain) and Notion pages (by link).

Account mentions are found by joining word n-grams of each text against the name variants of
``core.accounts`` (the full name, the name without its legal suffix — "Acme Logistics Pty. Ltd." →
"acme logistics" —, the domain and the domain's first label). A variant that two accounts share is
ambiguous and dropped, so a hit names exactly one account; when several variants match in one text,
overlapping shorter ones of the same account collapse into one mention. This is a join, not a regex
alternation over thousands of names, so it stays linear in the number of words.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

LEGAL_SUFFIXES = frozenset({
    "inc", "incorporated", "llc", "llp", "lp", "ltd", "limited", "ltda", "corp", "corporation", "co", "company",
    "gmbh", "ag", "kg", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "ab", "as", "asa", "oy", "oyj", "aps",
    "plc", "pty", "pvt", "pte", "private", "kk", "sl", "sro", "zoo", "sp",
})
MAX_NGRAM = 6
MIN_SINGLE_WORD = 4  # one-word variants shorter than this ("abc") are too likely to be ordinary words
NOTION_LINK = (r"notion\.(?:so|site)/[^\s<>|]*?([0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?"
               r"[0-9a-fA-F]{4}-?[0-9a-fA-F]{12})(?![0-9a-fA-F])")
_TRIM = "\"'`.,;:!?()[]{}<>*_~|"


def _words(text: pd.Series) -> pd.Series:
    """Lower-cased words of each text, one row per word, indexed by the text's position (in order)."""
    lowered = text.astype("string").str.lower().str.replace(r"https?://", " ", regex=True)
    # on Arrow strings, split and explode run in Arrow's kernels (the "string" dtype's split loops in Python)
    words = lowered.astype(pd.ArrowDtype(pa.string())).str.split().explode()
    words = words[words.notna()].astype("string").str.strip(_TRIM)
    words = words.str.replace(r"^www\.", "", regex=True).str.replace(r"/.*$", "", regex=True)
    return words[words != ""]


def _name_key(words: pd.Series) -> pd.Series:
    """A word as names are compared: without dots and apostrophes ("b.v." → "bv", "o'neil" → "oneil")."""
    return words.str.replace(r"[.'’]", "", regex=True)


def account_variants(accounts: pd.DataFrame) -> pd.DataFrame:
    """``variant`` → ``account_key`` for every unambiguous name or domain variant of each account."""
    names = accounts["name"].astype("string").str.lower().str.replace(r"[^\w\s.'’&-]", " ", regex=True)
    tokens = names.str.split().explode()
    tokens = _name_key(tokens.astype("string").str.strip(_TRIM))
    tokens = tokens[tokens.notna() & (tokens != "")]
    keys = accounts["account_key"]
    out = []
    if len(tokens):
        pos = tokens.groupby(level=0).cumcount()
        # legal suffix tail: every word from the last non-suffix word on is a suffix
        is_suffix = tokens.isin(LEGAL_SUFFIXES)
        last_core = pos.where(~is_suffix).groupby(level=0).transform("max")
        full = tokens.groupby(level=0).agg(" ".join)
        base = tokens[(pos <= last_core) | last_core.isna()].groupby(level=0).agg(" ".join)
        out += [full, base]
    domains = accounts["domain"].astype("string").str.lower().str.strip()
    out += [domains, domains.str.split(".").str[0]]
    frame = pd.concat([pd.DataFrame({"variant": v.astype("string"), "account_key": keys.loc[v.index]})
                       for v in out], ignore_index=True)
    frame = frame[frame["variant"].notna() & (frame["variant"].str.len() > 0)].drop_duplicates()
    single = ~frame["variant"].str.contains(" ", regex=False)
    frame = frame[~single | (frame["variant"].str.len() >= MIN_SINGLE_WORD)]
    frame = frame[~(single & frame["variant"].isin(LEGAL_SUFFIXES))]
    owners = frame.groupby("variant")["account_key"].transform("nunique")
    return frame[owners == 1].reset_index(drop=True)


def find_account_mentions(text: pd.Series, variants: pd.DataFrame) -> pd.DataFrame:
    """One row per (text position, account) mentioned: ``row`` (the index label of ``text``),
    ``account_key``, ``matched`` (the variant found). Empty when nothing matches."""
    empty = pd.DataFrame({"row": pd.Series(dtype=text.index.dtype), "account_key": pd.Series(dtype="string"),
                          "matched": pd.Series(dtype="string"), "position": pd.Series(dtype="int64")})
    if not len(text) or not len(variants):
        return empty
    labels = pd.Series(text.index, index=pd.RangeIndex(len(text)))
    words = _words(text.reset_index(drop=True))
    if not len(words):
        return empty
    rows = words.index.to_numpy()
    position = np.arange(len(rows)) - np.searchsorted(rows, rows, side="left")
    raw_words = words.reset_index(drop=True)
    keys = _name_key(raw_words)
    known = set(variants["variant"].tolist())
    n_max = int(min(MAX_NGRAM, variants["variant"].str.count(" ").max() + 1))
    hits = []

    def hit_rows(at: np.ndarray, matched: pd.Series) -> pd.DataFrame:
        return pd.DataFrame({"row": rows[at], "position": position[at], "matched": matched.to_numpy()})

    domain = raw_words.isin(known).to_numpy()  # domains keep their dots
    hits.append(hit_rows(np.flatnonzero(domain), raw_words[domain]))
    # n-grams only from words that start some variant, grown one word at a time within the same text
    start = np.flatnonzero(keys.isin(set(variants["variant"].str.split(" ").str[0])).to_numpy())
    grams = keys.iloc[start].reset_index(drop=True)
    for n in range(1, n_max + 1):
        if n > 1:
            nxt = start + n - 1
            same = nxt < len(rows)
            same[same] = rows[nxt[same]] == rows[start[same]]
            start, grams = start[same], grams[same].reset_index(drop=True)
            grams = grams + " " + keys.iloc[start + n - 1].reset_index(drop=True)
        hit = grams.isin(known).to_numpy()
        hits.append(hit_rows(start[hit], grams[hit]))
    found = pd.concat(hits, ignore_index=True)
    if not len(found):
        return empty
    found = found.merge(variants, left_on="matched", right_on="variant", how="inner").drop(columns="variant")
    found["length"] = found["matched"].str.len()
    found = found.sort_values(["row", "position", "length"], ascending=[True, True, False], kind="stable")
    found = found.drop_duplicates(["row", "account_key"])
    found["row"] = found["row"].map(labels)
    return found[["row", "account_key", "matched", "position"]].reset_index(drop=True).astype(
        {"account_key": "string", "matched": "string", "position": "int64"})


def find_notion_links(text: pd.Series) -> pd.DataFrame:
    """One row per (text, linked Notion id): ``row`` (index label of ``text``) and ``notion_id`` as a
    canonical hyphenated lower-case UUID, from ``notion.so``/``notion.site`` URLs."""
    maybe = text.astype("string")
    maybe = maybe[maybe.str.contains("notion.", regex=False).fillna(False).astype(bool)]
    if not len(maybe):
        return pd.DataFrame({"row": pd.Series(dtype=text.index.dtype), "notion_id": pd.Series(dtype="string")})
    found = maybe.str.extractall(NOTION_LINK)[0].astype("string")
    out = pd.DataFrame({"row": found.index.get_level_values(0), "notion_id": canonical_notion_id(found).to_numpy()})
    return out.drop_duplicates().reset_index(drop=True).astype({"notion_id": "string"})


def canonical_notion_id(ids: pd.Series) -> pd.Series:
    """Notion ids in the hyphenated lower-case form :func:`find_notion_links` returns."""
    hexed = ids.astype("string").str.replace("-", "", regex=False).str.lower()
    parts = [hexed.str[:8], hexed.str[8:12], hexed.str[12:16], hexed.str[16:20], hexed.str[20:]]
    return parts[0] + "-" + parts[1] + "-" + parts[2] + "-" + parts[3] + "-" + parts[4]
