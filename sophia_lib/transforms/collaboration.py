"""Core collaboration: Slack channels and messages (with the accounts and Notion pages they mention),
Notion pages and databases, Looker Looks.

Message text stays in ``core.messages`` (analysts may need it; the policy decides who sees it) and
never goes further: the marts carry counts only.
"""

from __future__ import annotations

import pandas as pd

from sophia_lib.transforms.context import TransformContext
from sophia_lib.transforms.mentions import (
    account_variants,
    canonical_notion_id,
    find_account_mentions,
    find_notion_links,
)
from sophia_lib.transforms.work_common import TS, concat_rows, employee_keys, source_key, typed

CHANNEL_COLUMNS = {
    "channel_key": "string", "channel_id": "string", "name": "string", "is_private": "boolean",
    "is_archived": "boolean", "is_general": "boolean", "is_external": "boolean", "account_key": "string",
    "created_at": TS, "creator_employee_key": "string", "topic": "string", "purpose": "string",
    "num_members": "Int64",
}
MESSAGE_COLUMNS = {
    "message_key": "string", "channel_key": "string", "channel_id": "string", "channel_name": "string",
    "ts": "string", "thread_ts": "string", "thread_key": "string", "sent_at": TS, "employee_key": "string",
    "user_id": "string", "is_bot": "boolean", "subtype": "string", "is_reply": "boolean",
    "is_thread_root": "boolean", "reply_count": "Int64", "reply_users_count": "Int64", "word_count": "Int64",
    "text": "string", "edited_at": TS, "mentioned_account_key": "string", "account_mention_count": "Int64",
    "notion_link_count": "Int64",
}
REFERENCE_COLUMNS = {
    "message_key": "string", "channel_key": "string", "sent_at": TS, "employee_key": "string",
    "ref_type": "string", "ref_key": "string", "matched": "string",
}
PAGE_COLUMNS = {
    "page_key": "string", "notion_id": "string", "object": "string", "title": "string", "url": "string",
    "database_key": "string", "database": "string", "parent_type": "string", "parent_id": "string",
    "author_employee_key": "string", "created_by_id": "string", "last_edited_by_employee_key": "string",
    "last_edited_by_id": "string", "created_at": TS, "last_edited_at": TS, "archived": "boolean",
    "word_count": "Int64",
}
LOOK_COLUMNS = {
    "look_key": "string", "looker_id": "string", "title": "string", "description": "string", "model": "string",
    "folder_id": "string", "query_id": "string", "author_employee_key": "string", "user_id": "string",
    "view_count": "Int64", "public": "boolean", "created_at": TS, "updated_at": TS,
}
LOOK_RESULT_COLUMNS = {"look_key": "string", "row_number": "Int64", "data": "string"}
EXTERNAL_CHANNEL = r"^(?:ext|shared|external|partner)[-_]"
WORD_PROPERTY = r'"(?:Words|Word count|word_count|Word Count)"\s*:\s*(\d+)'


def build_channels(channels: pd.DataFrame, accounts: pd.DataFrame, xref: pd.DataFrame) -> pd.DataFrame:
    variants = account_variants(accounts)
    about = channels["topic"].astype("string").fillna("") + " " + channels["purpose"].astype("string").fillna("")
    named = find_account_mentions(about, variants).drop_duplicates("row")
    external = channels["name"].astype("string").str.contains(EXTERNAL_CHANNEL, regex=True).fillna(False)
    frame = pd.DataFrame({
        "channel_key": source_key("slack", channels["id"]), "channel_id": channels["id"], "name": channels["name"],
        "is_private": channels["is_private"], "is_archived": channels["is_archived"],
        "is_general": channels["is_general"], "is_external": external,
        "account_key": pd.Series(named["account_key"].to_numpy(), index=named["row"]).reindex(channels.index),
        "created_at": channels["created"], "creator_employee_key": employee_keys(xref, "slack", channels["creator"]),
        "topic": channels["topic"], "purpose": channels["purpose"], "num_members": channels["num_members"],
    })
    return typed(frame, CHANNEL_COLUMNS)


def build_messages(messages: pd.DataFrame, channels: pd.DataFrame, accounts: pd.DataFrame, pages: pd.DataFrame,
                   xref: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``core.messages`` and ``core.message_references`` (one row per account or Notion page a message names)."""
    channel_id = messages["channel_id"].astype("string")
    ts = messages["ts"].astype("string")
    thread_ts = messages["thread_ts"].astype("string")
    is_reply = messages["is_reply"].fillna(False).astype(bool)
    reply_count = pd.to_numeric(messages["reply_count"], errors="coerce").fillna(0).astype("int64")
    text = messages["text"].astype("string")
    frame = pd.DataFrame({
        "message_key": "slack:" + channel_id + ":" + ts, "channel_key": "slack:" + channel_id,
        "channel_id": channel_id, "channel_name": channel_id.map(channels.set_index("channel_id")["name"]),
        "ts": ts, "thread_ts": thread_ts, "thread_key": ("slack:" + channel_id + ":" + thread_ts),
        "sent_at": messages["posted_at"], "employee_key": employee_keys(xref, "slack", messages["user_id"]),
        "user_id": messages["user_id"], "is_bot": messages["bot_id"].notna(), "subtype": messages["subtype"],
        "is_reply": is_reply, "is_thread_root": ~is_reply & ((reply_count > 0) | (thread_ts == ts).fillna(False)),
        "reply_count": reply_count, "reply_users_count": messages["reply_users_count"],
        "word_count": text.str.count(r"\S+").fillna(0), "text": text, "edited_at": messages["edited_at"],
    })
    frame = frame.reset_index(drop=True)
    text = frame["text"]
    mentions = find_account_mentions(text, account_variants(accounts))
    first = mentions.sort_values(["row", "position"], kind="stable").drop_duplicates("row")
    frame["mentioned_account_key"] = pd.Series(first["account_key"].to_numpy(), index=first["row"]).reindex(
        frame.index)
    frame["account_mention_count"] = mentions.groupby("row").size().reindex(frame.index, fill_value=0)
    links = find_notion_links(text)
    frame["notion_link_count"] = links.groupby("row").size().reindex(frame.index, fill_value=0)
    page_of = pages.set_index("notion_id")["page_key"]
    refs = pd.concat([
        pd.DataFrame({"row": mentions["row"], "ref_type": "account", "ref_key": mentions["account_key"],
                      "matched": mentions["matched"]}),
        pd.DataFrame({"row": links["row"], "ref_type": "notion_page",
                      "ref_key": links["notion_id"].map(page_of).astype("string"), "matched": links["notion_id"]}),
    ], ignore_index=True)
    head = frame.loc[refs["row"], ["message_key", "channel_key", "sent_at", "employee_key"]].reset_index(drop=True)
    refs = pd.concat([head, refs.drop(columns="row").reset_index(drop=True)], axis=1)
    return typed(frame, MESSAGE_COLUMNS), typed(refs, REFERENCE_COLUMNS)


def build_pages(pages: pd.DataFrame, databases: pd.DataFrame, xref: pd.DataFrame) -> pd.DataFrame:
    db_id = canonical_notion_id(databases["id"])
    db_title = pd.Series(databases["title"].astype("string").to_numpy(), index=db_id.to_numpy())
    page_db = canonical_notion_id(pages["database_id"])
    words = pages["properties"].astype("string").str.extract(WORD_PROPERTY, expand=False)

    def rows(frame: pd.DataFrame, kind: str, database: pd.Series, word_count: pd.Series | None) -> pd.DataFrame:
        notion_id = canonical_notion_id(frame["id"])
        return pd.DataFrame({
            "page_key": source_key("notion", notion_id), "notion_id": notion_id, "object": kind,
            "title": frame["title"], "url": frame["url"], "database_key": source_key("notion", database),
            "database": database.map(db_title), "parent_type": frame["parent_type"], "parent_id": frame["parent_id"],
            "author_employee_key": employee_keys(xref, "notion", frame["created_by_id"]),
            "created_by_id": frame["created_by_id"],
            "last_edited_by_employee_key": employee_keys(xref, "notion", frame["last_edited_by_id"]),
            "last_edited_by_id": frame["last_edited_by_id"], "created_at": frame["created_time"],
            "last_edited_at": frame["last_edited_time"], "archived": frame["trashed"].fillna(False),
            "word_count": pd.to_numeric(word_count, errors="coerce") if word_count is not None else pd.NA,
        })

    both = [rows(pages, "page", page_db, words),
            rows(databases, "database", pd.Series(pd.NA, index=databases.index, dtype="string"), None)]
    return typed(concat_rows(both), PAGE_COLUMNS)


def build_looks(looks: pd.DataFrame, results: pd.DataFrame, xref: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    frame = pd.DataFrame({
        "look_key": source_key("looker", looks["id"]), "looker_id": looks["id"], "title": looks["title"],
        "description": looks["description"], "model": looks["model"], "folder_id": looks["folder_id"],
        "query_id": looks["query_id"], "author_employee_key": employee_keys(xref, "looker", looks["user_id"]),
        "user_id": looks["user_id"], "view_count": looks["view_count"], "public": looks["public"],
        "created_at": looks["created_at"], "updated_at": looks["updated_at"],
    })
    frame = frame[~looks["deleted"].fillna(False).astype(bool)]
    rows = pd.DataFrame({"look_key": source_key("looker", results["look_id"]), "row_number": results["row_number"],
                         "data": results["data"]})
    return typed(frame, LOOK_COLUMNS), typed(rows, LOOK_RESULT_COLUMNS)


def build_collaboration(ctx: TransformContext) -> None:
    """``core.channels``, ``core.messages``, ``core.message_references``, ``core.pages``, ``core.looks``,
    ``core.look_results``."""
    xref = ctx.table("core.employee_xref")
    accounts = ctx.table("core.accounts")[["account_key", "name", "domain"]]
    pages = build_pages(
        ctx.raw("notion", "pages", ["id", "created_time", "last_edited_time", "created_by_id", "last_edited_by_id",
                                    "parent_type", "parent_id", "url", "trashed", "title", "database_id",
                                    "properties"]),
        ctx.raw("notion", "databases", ["id", "created_time", "last_edited_time", "created_by_id",
                                        "last_edited_by_id", "parent_type", "parent_id", "url", "trashed", "title"]),
        xref)
    channels = build_channels(ctx.raw("slack", "channels", ["id", "name", "is_private", "is_archived", "is_general",
                                                            "created", "creator", "topic", "purpose", "num_members"]),
                              accounts, xref)
    messages, refs = build_messages(
        ctx.raw("slack", "messages", ["channel_id", "ts", "posted_at", "thread_ts", "is_reply", "user_id", "bot_id",
                                      "subtype", "text", "reply_count", "reply_users_count", "edited_at"]),
        channels, accounts, pages, xref)
    looks, results = build_looks(
        ctx.raw("looker", "looks", ["id", "title", "description", "model", "folder_id", "user_id", "query_id",
                                    "view_count", "public", "created_at", "updated_at", "deleted"]),
        ctx.raw("looker", "look_results", ["look_id", "row_number", "data"]), xref)
    ctx.write("core", "channels", channels)
    ctx.write("core", "messages", messages)
    ctx.write("core", "message_references", refs)
    ctx.write("core", "pages", pages)
    ctx.write("core", "looks", looks)
    ctx.write("core", "look_results", results)
