"""Django's Redis cache on a Redis Cluster (``REDIS_CLUSTER``): every key goes to the shard owning its slot.

Django's ``RedisCache`` talks to one server; on a cluster node it would meet ``MOVED`` for most keys. This
backend keeps Django's serialisation and semantics and swaps the client for redis-py's ``RedisCluster``
(which follows the slot map); the multi-key calls use the cluster client's non-atomic forms, since the
keys of one ``get_many``/``set_many`` (throttle and lockout counters) may live on different shards.
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from redis.cluster import RedisCluster


class RedisClusterCacheClient(RedisCacheClient):
    """One ``RedisCluster`` client per process (it pools a connection per node itself)."""

    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._cluster: RedisCluster | None = None

    def get_client(self, key: Any = None, *, write: bool = False) -> RedisCluster:
        if self._cluster is None:
            self._cluster = RedisCluster.from_url(self._servers[0], socket_connect_timeout=2)
        return self._cluster

    def get_many(self, keys: Any) -> dict[Any, Any]:
        keys = list(keys)
        values = self.get_client().mget_nonatomic(keys)
        return {k: self._serializer.loads(v) for k, v in zip(keys, values, strict=True) if v is not None}

    def set_many(self, data: dict[Any, Any], timeout: int | None) -> None:
        client = self.get_client(write=True)
        pipeline = client.pipeline()  # a cluster pipeline sends each command to its key's shard
        for key, value in data.items():
            if timeout is None:
                pipeline.set(key, self._serializer.dumps(value))
            else:
                pipeline.set(key, self._serializer.dumps(value), ex=timeout)
        pipeline.execute()

    def clear(self) -> bool:
        return bool(self.get_client(write=True).flushdb(target_nodes=RedisCluster.PRIMARIES))


class RedisClusterCache(RedisCache):
    """``CACHES = {"default": {"BACKEND": "chatproject.cluster_cache.RedisClusterCache", "LOCATION": url}}``."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = RedisClusterCacheClient
