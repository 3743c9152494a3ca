"""Normalisers the entity resolution matches on: domains, e-mails, company names and personal names.

All take and return pandas Series (vectorised string methods, so they run on cuDF under ``cudf.pandas``)
and map blanks to ``<NA>``: an empty key must never match another empty key.
"""

from __future__ import annotations

import pandas as pd

# Mailbox providers: an address there says nothing about the employer, so it never links a person to an
# account and a domain like this is never an account's domain.
FREE_MAIL_DOMAINS = frozenset((
    "aol.com", "gmail.com", "googlemail.com", "hotmail.com", "hotmail.co.uk", "hotmail.fr", "icloud.com", "live.com",
    "mac.com", "me.com", "msn.com", "outlook.com", "proton.me", "protonmail.com", "yahoo.com", "yahoo.co.uk",
    "yahoo.fr", "yandex.ru", "ymail.com", "zoho.com", "gmx.de", "gmx.net", "web.de", "mail.com", "mail.ru", "qq.com",
    "163.com", "naver.com", "fastmail.com", "hey.com",
))

# Second-level labels under a country code that are themselves public suffixes (acme.co.uk, acme.com.au):
# the registrable domain keeps one more label under them.
_SECOND_LEVEL = "ac|co|com|edu|gov|govt|ltd|ne|net|or|org|plc"

# Legal-form suffixes dropped from company names before comparing (longest first where they overlap).
LEGAL_FORMS = (
    "incorporated", "inc", "corporation", "corp", "company", "co", "limited", "ltd", "llc", "llp", "lp", "plc",
    "gmbh", "ag", "kg", "se", "sa", "sas", "sarl", "srl", "spa", "bv", "nv", "ab", "as", "asa", "oy", "oyj",
    "aktiebolag", "kk", "pty", "pte", "pvt", "private", "ltda", "sl", "kft", "sro", "group holdings",
)
_LEGAL_TAIL = r"(?:\s+(?:" + "|".join(LEGAL_FORMS) + r"))+$"


def _blank_to_na(s: pd.Series) -> pd.Series:
    return s.where(s.str.len() > 0)


def normalise_domain(values: pd.Series) -> pd.Series:
    """A website, URL or e-mail domain as its registrable domain: lowercase, no scheme, credentials,
    port, path, query, ``www.``/other subdomains or trailing dot (``https://WWW.App.Acme.co.uk./x`` →
    ``acme.co.uk``). Unparseable values (no dot, spaces inside) become ``<NA>``."""
    s = values.astype("string").str.strip().str.lower()
    s = s.str.replace(r"^[a-z][a-z0-9+.\-]*://", "", regex=True)
    s = s.str.replace(r"^[^/@]*@", "", regex=True)
    s = s.str.replace(r"[/?#].*$", "", regex=True)
    s = s.str.replace(r":\d*$", "", regex=True).str.strip(".")
    valid = s.str.fullmatch(r"[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9\-]*[a-z0-9])?)+")
    s = s.where(valid.fillna(False).astype(bool))
    three = s.str.extract(r"((?:[a-z0-9\-]+)\.(?:" + _SECOND_LEVEL + r")\.[a-z]{2})$", expand=False)
    two = s.str.extract(r"([a-z0-9\-]+\.[a-z0-9\-]+)$", expand=False)
    return _blank_to_na(three.fillna(two).astype("string"))


def normalise_email(values: pd.Series) -> pd.Series:
    """Trimmed, lowercased e-mail; ``mailto:`` and display names (``Ann <ann@x.com>``) removed; a value
    without exactly one ``@`` and a dotted domain is ``<NA>``."""
    s = values.astype("string").str.strip().str.lower()
    s = s.str.replace(r"^mailto:", "", regex=True)
    inner = s.str.extract(r"<([^<>]+)>\s*$", expand=False)
    s = inner.fillna(s).str.strip()
    valid = s.str.fullmatch(r"[^@\s]+@[a-z0-9\-]+(?:\.[a-z0-9\-]+)+")
    return _blank_to_na(s.where(valid.fillna(False).astype(bool)))


def email_domain(emails: pd.Series) -> pd.Series:
    """The registrable domain of normalised e-mails, ``<NA>`` for free-mail providers."""
    part = emails.astype("string").str.replace(r"^.*@", "", regex=True)  # after the last "@"
    unique = part.dropna().drop_duplicates()
    normal = pd.Series(normalise_domain(unique).to_numpy(), index=unique.to_numpy())
    domain = part.map(normal).astype("string")
    return domain.where(~domain.isin(FREE_MAIL_DOMAINS))


def company_name_key(names: pd.Series) -> pd.Series:
    """A company name reduced for comparison: lowercase ASCII words, punctuation and ``&``/``and`` folded,
    legal forms at the end dropped (``ACME Widgets, Inc.`` ≡ ``Acme Widgets Incorporated``)."""
    s = names.astype("string").str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii")
    s = s.str.lower().str.replace("&", " and ", regex=False)
    s = s.str.replace(r"(?<=\b[a-z])\.(?=[a-z]\b)", "", regex=True)
    s = s.str.replace(r"[^a-z0-9]+", " ", regex=True).str.strip()
    s = s.str.replace(r"\b([a-z]) ([a-z])\b", r"\1\2", regex=True)
    stripped = s.str.replace(_LEGAL_TAIL, "", regex=True).str.strip()
    s = stripped.where(stripped.str.len() > 0, s)
    return _blank_to_na(s.str.replace(r"^the ", "", regex=True))


def person_name_key(first: pd.Series | None, last: pd.Series | None, full: pd.Series | None = None) -> pd.Series:
    """``first last`` (or the full name where the parts are missing) lowercased, accents and punctuation
    folded, single spaces."""
    parts = None
    if first is not None and last is not None:
        parts = (first.astype("string").fillna("") + " " + last.astype("string").fillna(""))
    s = parts if full is None else (full.astype("string") if parts is None else parts.where(
        parts.str.strip().str.len() > 0, full.astype("string")))
    s = s.str.normalize("NFKD").str.encode("ascii", "ignore").str.decode("ascii").str.lower()
    s = s.str.replace(r"[^a-z0-9]+", " ", regex=True).str.strip()
    return _blank_to_na(s)
