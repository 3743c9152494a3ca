"""The result cache of the query service: Arrow IPC bodies keyed by (rewritten query, policy scope,
snapshot id).

The snapshot id is part of the key, so a publish makes every older entry unreachable at once: a
result is never stale and there is no timer. Everyone with the same policy scope (role + bound
row-filter attributes) shares entries. In-process LRU bounded by bytes by default; Redis when
``query.cache: redis`` (shared by several service processes).
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any, Protocol

from sophia_lib.config.typing import SophiaConfig
from sophia_lib.errors import ConfigError, MissingDependencyError

REDIS_PREFIX = "sophia:query:"
REDIS_TTL_S = 7 * 24 * 3600  # entries of superseded snapshots age out; never needed for freshness


def cache_key(snapshot_id: str, scope_key: str, sql: str, params: Mapping[str, Any]) -> str:
    body = json.dumps([snapshot_id, scope_key, sql, sorted(params.items())], default=str, separators=(",", ":"))
    return hashlib.sha256(body.encode()).hexdigest()


class ResultCache(Protocol):
    def get(self, key: str) -> bytes | None: ...

    def put(self, key: str, value: bytes) -> None: ...


class NoCache:
    """``query.cache: off``."""

    def get(self, key: str) -> bytes | None:
        return None

    def put(self, key: str, value: bytes) -> None:
        return None


class MemoryCache:
    """Least recently used entries go first once the bodies exceed ``max_bytes``."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.size = 0
        self._entries: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> bytes | None:
        with self._lock:
            value = self._entries.get(key)
            if value is not None:
                self._entries.move_to_end(key)
            return value

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_bytes // 4:  # one huge result must not flush everyone else's
            return
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self.size -= len(old)
            self._entries[key] = value
            self.size += len(value)
            while self.size > self.max_bytes and self._entries:
                _, evicted = self._entries.popitem(last=False)
                self.size -= len(evicted)

    def __len__(self) -> int:
        return len(self._entries)


class RedisCache:
    """Entries in Redis (``query.redis_url``), shared by every service process."""

    def __init__(self, url: str, password: str | None = None, max_entry_bytes: int = 64 << 20) -> None:
        try:
            import redis
        except ImportError as exc:
            raise MissingDependencyError("redis", "query.cache: redis", "redis") from exc
        self.max_entry_bytes = max_entry_bytes
        self._client = redis.Redis.from_url(url, password=password, socket_timeout=2, socket_connect_timeout=2)
        self._errors = (redis.RedisError,)

    def get(self, key: str) -> bytes | None:
        try:
            return self._client.get(REDIS_PREFIX + key)
        except self._errors:
            return None  # a cache that is down must not stop reads

    def put(self, key: str, value: bytes) -> None:
        if len(value) > self.max_entry_bytes:
            return
        try:
            self._client.set(REDIS_PREFIX + key, value, ex=REDIS_TTL_S)
        except self._errors:
            return


def open_cache(config: SophiaConfig) -> ResultCache:
    settings = config.query
    if settings.cache == "off":
        return NoCache()
    if settings.cache == "memory":
        return MemoryCache(settings.cache_max_mb << 20)
    if not settings.redis_url:
        raise ConfigError("query.cache is redis but query.redis_url is not set.",
                          fix="set query.redis_url (redis://host:6379/0) or query.cache: memory")
    password = None
    if settings.redis_password is not None:
        from sophia_lib.secrets import resolve

        password = resolve(settings.redis_password, config)
    return RedisCache(settings.redis_url, password)
