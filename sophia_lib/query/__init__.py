"""The query door: every read of core, marts and metrics passes through the ``query`` service.

The service (:mod:`.service`) verifies the caller's hub token (:mod:`.identity`), applies the data
policy (:mod:`.policy`, ``policy.yaml``) by rewriting the SQL (:mod:`.guard`), serves from a cache
keyed by snapshot (:mod:`.cache`) and records every read in the hash-chained audit log
(:mod:`sophia_lib.audit`). Notebooks, dashboards and jobs use the thin client (:mod:`.client`),
usually through ``sophia_lib.metric`` / ``table`` / ``sql``.
"""

from __future__ import annotations

from sophia_lib.query.client import QueryClient, default_client

__all__ = ["QueryClient", "default_client"]
