"""The entity map: one row per appearance of an account, person or employee in a system, with the mess
that system shows (email case and whitespace, ``www.``/subdomain domains, legal-suffix and case variants of
names, duplicates). A missing link is a missing row; the planted ones are also listed in ``labels``."""

from __future__ import annotations

import numpy as np
import pandas as pd

from sophia_lib.sandbox.gen import ids
from sophia_lib.sandbox.gen.util import Timeline, stamp_frame

SUFFIX_VARIANTS = {
    "Inc.": ["Inc", ", Inc.", "Incorporated", "INC"],
    "Ltd": ["Ltd.", "Limited", "LTD"],
    "GmbH": ["GMBH", "Gmbh"],
    "Pty Ltd": ["Pty. Ltd.", "PTY LTD"],
    "SAS": ["S.A.S."],
    "B.V.": ["BV"],
    "AB": ["Aktiebolag"],
    "K.K.": ["KK"],
    "Pte. Ltd.": ["Pte Ltd"],
    "Pvt. Ltd.": ["Private Limited"],
    "Ltda.": ["Ltda"],
}

# which employees (by team) are users of each system
EMPLOYEE_SYSTEMS = {
    "salesforce": ("Leadership Enterprise Mid-Market SMB SDR CSM Demand Gen Finance", "005"),
    "hubspot": ("Leadership Enterprise Mid-Market SMB SDR CSM Demand Gen Product Marketing", "num"),
    "gong": ("Leadership Enterprise Mid-Market SMB SDR CSM", "num"),
    "slack": ("*", "slack"),
    "asana": ("Leadership Demand Gen Product Marketing CSM Support Finance SDR Product", "num"),
    "linear": ("Platform Data Apps Infra Product", "uuid"),
    "notion": ("*", "uuid"),
    "intercom": ("Support CSM", "num"),
    "netsuite": ("*", "num"),
    "looker": ("Leadership Finance Data Product", "num"),
}


def email_variant(rng: np.random.Generator, email: pd.Series, p_case: float, p_space: float) -> np.ndarray:
    """Canonical e-mails with some upper-cased and some padded with whitespace (as systems store them)."""
    e = email.to_numpy(dtype=object).copy()
    n = len(e)
    u = rng.random(n)
    s = pd.Series(e, dtype=object)
    cap = s.str[:1].str.upper() + s.str[1:]
    e = np.where(u < p_case / 2, s.str.upper(), np.where(u < p_case, cap, e))
    v = rng.random(n)
    e = np.where(v < p_space / 2, " " + pd.Series(e) + " ", np.where(v < p_space, pd.Series(e) + " ", e))
    return e.astype(object)


def domain_variant(
    rng: np.random.Generator, domain: pd.Series, p_www: float, p_sub: float, p_case: float, p_url: float = 0.0
) -> np.ndarray:
    d = domain.astype(object).reset_index(drop=True)
    u = rng.random(len(d))
    out = np.where(
        u < p_www,
        "www." + d,
        np.where(
            u < p_www + p_sub,
            pd.Series(np.array(["app.", "mail.", "eu."], dtype=object)[rng.integers(0, 3, len(d))]) + d,
            d,
        ),
    )
    out = np.where(rng.random(len(d)) < p_case, pd.Series(out).str.upper(), out)
    out = np.where(rng.random(len(d)) < p_url, "https://" + pd.Series(out) + "/", out)
    return out.astype(object)


def name_variant(rng: np.random.Generator, name: pd.Series, p_suffix: float, p_case: float) -> np.ndarray:
    out = name.to_numpy(dtype=object).copy()
    u = rng.random(len(out))
    for suffix, variants in SUFFIX_VARIANTS.items():
        sel = np.flatnonzero((u < p_suffix) & name.str.endswith(" " + suffix).to_numpy())
        if len(sel) == 0:
            continue
        base = name.iloc[sel].str[: -len(suffix) - 1]
        pick_v = np.array(variants, dtype=object)[rng.integers(0, len(variants), len(sel))]
        sep = np.where(np.char.startswith(pick_v.astype(str), ","), "", " ")
        out[sel] = (base + pd.Series(sep, index=base.index) + pd.Series(pick_v, index=base.index)).to_numpy()
    v = rng.random(len(out))
    s = pd.Series(out, dtype=object)
    out = np.where(v < p_case / 2, s.str.upper(), np.where(v < p_case, s.str.lower(), out))
    return out.astype(object)


def _rows(
    entity: str,
    entity_ids: np.ndarray,
    system: str,
    system_ids: np.ndarray,
    name=None,
    email=None,
    domain=None,
    phone=None,
    dup=None,
    created=None,
) -> pd.DataFrame:
    n = len(entity_ids)

    def col(x):
        return pd.array([None] * n if x is None else np.asarray(x, dtype=object), dtype="str")

    frame = pd.DataFrame(
        {
            "entity": entity,
            "entity_id": np.asarray(entity_ids, dtype=object),
            "system": system,
            "system_id": np.asarray(system_ids, dtype=object),
            "name": col(name),
            "email": col(email),
            "domain": col(domain),
            "phone": col(phone),
            "is_duplicate": np.zeros(n, dtype=bool) if dup is None else dup,
        }
    )
    frame["_created"] = created
    return frame


def build(
    rng: np.random.Generator,
    tl: Timeline,
    acc: pd.DataFrame,
    people: pd.DataFrame,
    emp: pd.DataFrame,
    opps: pd.DataFrame,
    conv: pd.DataFrame,
    activities: pd.DataFrame,
    calls: pd.DataFrame,
) -> tuple[pd.DataFrame, pd.DataFrame, np.ndarray]:
    """Presence rows, labels of planted missing links/duplicates, and accounts planted missing in NetSuite."""
    parts: list[pd.DataFrame] = []
    labels: list[pd.DataFrame] = []
    n_acc = len(acc)
    aid = acc["account_id"].to_numpy(dtype=object)
    first = tl.days(acc["first_touch_at"])
    since = tl.days(acc["customer_since"])
    customer = ~np.isnan(since)
    in_sf = acc["account_id"].isin(opps["account_id"]).to_numpy()

    parts.append(
        _rows(
            "account",
            aid,
            "hubspot",
            ids.numeric(rng, n_acc, 5_100_000_000, 20_000),
            name_variant(rng, acc["name"], 0.1, 0.05),
            domain=domain_variant(rng, acc["domain"], 0.15, 0.05, 0.03),
            created=first,
        )
    )
    parts.append(
        _rows(
            "account",
            aid,
            "factors",
            acc["domain"].to_numpy(dtype=object),
            acc["name"].to_numpy(),
            domain=domain_variant(rng, acc["domain"], 0.3, 0.1, 0.0),
            created=first,
        )
    )
    sf = np.flatnonzero(in_sf)
    sf_created = opps.groupby("account_id")["created_at"].min().reindex(aid[sf])
    parts.append(
        _rows(
            "account",
            aid[sf],
            "salesforce",
            ids.salesforce("account", ids.sequence(rng, len(sf), 1_000_000, 3_000)),
            name_variant(rng, acc["name"].iloc[sf], 0.15, 0.03),
            domain=domain_variant(rng, acc["domain"].iloc[sf], 0.4, 0.02, 0.02, p_url=0.1),
            created=tl.days(sf_created) - 0.01,
        )
    )
    missing_ns = customer & (rng.random(n_acc) < 0.03)
    ns = np.flatnonzero(customer & ~missing_ns)
    parts.append(
        _rows(
            "account",
            aid[ns],
            "netsuite",
            ids.numeric(rng, len(ns), 1_200, 4),
            name_variant(rng, acc["name"].iloc[ns], 0.35, 0.1),
            created=since[ns],
        )
    )
    missing_ic = customer & (rng.random(n_acc) < 0.05)
    ic = np.flatnonzero((customer & ~missing_ic) | acc["account_id"].isin(conv["account_id"]).to_numpy())
    missing_ic &= ~np.isin(np.arange(n_acc), ic)
    parts.append(
        _rows(
            "account",
            aid[ic],
            "intercom",
            ids.hex_ids(rng, len(ic)),
            acc["name"].iloc[ic].to_numpy(),
            created=np.where(customer[ic], since[ic], first[ic]),
        )
    )
    labels += [
        _label("account", aid[missing_ns], "missing_in", "netsuite"),
        _label("account", aid[missing_ic], "missing_in", "intercom"),
        _label("account", aid[customer & ~in_sf], "missing_in", "salesforce"),
    ]

    # People
    pid = people["person_id"].to_numpy(dtype=object)
    n_p = len(people)
    p_created = tl.days(people["created_at"])
    parts.append(
        _rows(
            "person",
            pid,
            "hubspot",
            ids.numeric(rng, n_p, 51, 400),
            people["first_name"] + " " + people["last_name"],
            email_variant(rng, people["email"], 0.08, 0.03),
            phone=people["phone"].to_numpy(),
            created=p_created,
        )
    )
    acc_pos = pd.Index(aid).get_indexer(people["account_id"])
    sf_people = np.flatnonzero(in_sf[acc_pos])
    sf_people_created = np.maximum(
        p_created[sf_people], tl.days(sf_created.reindex(aid[acc_pos[sf_people]])) - 0.01
    )
    parts.append(
        _rows(
            "person",
            pid[sf_people],
            "salesforce",
            ids.salesforce("contact", ids.sequence(rng, len(sf_people), 2_000_000, 500)),
            people["first_name"].iloc[sf_people] + " " + people["last_name"].iloc[sf_people],
            email_variant(rng, people["email"].iloc[sf_people], 0.05, 0.02),
            phone=people["phone"].iloc[sf_people].to_numpy(),
            created=sf_people_created,
        )
    )
    talked = people["person_id"].isin(conv["person_id"]).to_numpy()
    at_customer = customer[acc_pos] & ~missing_ic[acc_pos]
    missing_p = at_customer & ~talked & (rng.random(n_p) < 0.12)
    icp = np.flatnonzero((at_customer & ~missing_p) | talked)
    parts.append(
        _rows(
            "person",
            pid[icp],
            "intercom",
            ids.hex_ids(rng, len(icp)),
            people["first_name"].iloc[icp] + " " + people["last_name"].iloc[icp],
            email_variant(rng, people["email"].iloc[icp], 0.1, 0.05),
            created=np.maximum(p_created[icp], np.nan_to_num(since[acc_pos[icp]], nan=-1e9)),
        )
    )
    labels.append(_label("person", pid[missing_p], "missing_in", "intercom"))

    # Duplicates: a second record of the same person, usually with a differently written e-mail.
    for system, rate, idf in (
        ("hubspot", 0.025, "num"),
        ("salesforce", 0.03, "sf"),
        ("intercom", 0.02, "hex"),
    ):
        base = pd.concat(
            [p for p in parts if p["entity"].iat[0] == "person" and p["system"].iat[0] == system]
        )
        sel = np.flatnonzero(rng.random(len(base)) < rate)
        d = base.iloc[sel].copy()
        if idf == "num":
            d["system_id"] = ids.numeric(rng, len(d), 90_000_000, 1_000)
        elif idf == "sf":
            d["system_id"] = ids.salesforce("contact", ids.sequence(rng, len(d), 8_000_000, 500))
        else:
            d["system_id"] = ids.hex_ids(rng, len(d))
        clean = people.set_index("person_id").loc[d["entity_id"], "email"]
        d["email"] = pd.array(email_variant(rng, clean, 0.7, 0.3), dtype="str")
        d["is_duplicate"] = True
        d["_created"] = np.minimum(d["_created"].to_numpy() + rng.uniform(5, 200, len(d)), tl.horizon - 0.5)
        parts.append(d)
        labels.append(_label("person", d["entity_id"].to_numpy(), "duplicate_in", system))

    # Employees as users of each tool.
    teams = emp["team"].to_numpy()
    full = emp["first_name"] + " " + emp["last_name"]
    hired = np.maximum(tl.days(emp["hired_at"]), -30)
    for system, (audience, style) in EMPLOYEE_SYSTEMS.items():
        sel = np.arange(len(emp)) if audience == "*" else np.flatnonzero(np.isin(teams, audience.split()))
        k = len(sel)
        if style == "005":
            sid = ids.salesforce("user", ids.sequence(rng, k, 500_000, 300))
        elif style == "slack":
            sid = ids.slack(rng, k, "U")
        elif style == "uuid":
            sid = ids.uuids(rng, k)
        else:
            sid = ids.numeric(
                rng,
                k,
                {
                    "gong": 2_230_000_000_000_000_000,
                    "asana": 1_203_000_000_000_000,
                    "hubspot": 30_000_000,
                }.get(system, 100),
                {"gong": 10**12, "asana": 10**9, "hubspot": 10_000}.get(system, 7),
            )
        parts.append(
            _rows(
                "employee",
                emp["employee_id"].to_numpy(dtype=object)[sel],
                system,
                sid,
                full.iloc[sel].to_numpy(),
                email_variant(rng, emp["email"].iloc[sel], 0.04, 0.0),
                created=hired[sel],
            )
        )

    frame = pd.concat(parts, ignore_index=True)
    created = frame.pop("_created").to_numpy(dtype=float)
    created = np.minimum(np.nan_to_num(created, nan=0.0), tl.horizon - 0.001)
    frame = stamp_frame(frame, tl.ts(created))
    return frame, pd.concat(labels, ignore_index=True), np.flatnonzero(missing_ns)


def _label(entity: str, entity_ids: np.ndarray, label: str, value: str) -> pd.DataFrame:
    return pd.DataFrame(
        {"entity": entity, "entity_id": np.asarray(entity_ids, dtype=object), "label": label, "value": value}
    )
