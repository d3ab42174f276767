"""Chunks as objects in an S3-compatible bucket (``s3://bucket[/prefix]?endpoint=URL&region=R``).

One object per chunk, named ``<prefix><64-hex id>`` (default prefix ``chunks/``).
An S3 PUT is atomic (an object is absent or whole), so no temp files. Every
call is a short HTTPS (or HTTP, for a local endpoint) request through boto3,
whose client is thread-safe and keeps a pool of connections; it is never
called inside a metadata unit of work.

Credentials come from the environment as for any AWS tool
(``AWS_ACCESS_KEY_ID``/``AWS_SECRET_ACCESS_KEY``, ``AWS_PROFILE``, instance
roles); with none at all, requests go unsigned (a local SeaweedFS without
authentication). The bucket is created if it does not exist.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .chunks import ID_RE, ChunkNotFound, ChunkStore, check_id

DEFAULT_PREFIX = "chunks/"
POOL = 48  # connections per client: the server's request threads, GC and deletions


def _missing(error: Exception) -> bool:
    response = getattr(error, "response", None) or {}
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("404", "NoSuchKey", "NotFound", "NoSuchBucket") or status == 404


class S3ChunkStore(ChunkStore):
    def __init__(
        self, bucket: str, prefix: str = DEFAULT_PREFIX, endpoint: str | None = None, region: str | None = None
    ) -> None:
        import boto3
        import botocore
        from botocore.config import Config

        self.bucket = bucket
        self.prefix = prefix
        session = boto3.session.Session()
        options: dict[str, Any] = {
            "max_pool_connections": POOL,
            # No CRC of every body on the way in and out: a chunk is named by its SHA-256, which the
            # server checks on upload and every client checks on download (it measured 25% on PUT).
            "request_checksum_calculation": "when_required",
            "response_checksum_validation": "when_required",
            "retries": {"max_attempts": 5, "mode": "standard"},
            "s3": {"addressing_style": "path"} if endpoint else {},
        }
        if session.get_credentials() is None:
            options["signature_version"] = botocore.UNSIGNED
        self._client = session.client(
            "s3", endpoint_url=endpoint, region_name=region or "us-east-1", config=Config(**options)
        )
        self._errors = (self._client.exceptions.ClientError,)
        try:
            self._client.head_bucket(Bucket=bucket)
        except self._errors as e:
            if not _missing(e):
                raise
            self._client.create_bucket(Bucket=bucket)

    @classmethod
    def from_url(cls, url: str) -> S3ChunkStore:
        """``s3://bucket[/prefix/]?endpoint=http://host:port&region=us-east-1``."""
        parts = urlsplit(url)
        if parts.scheme != "s3" or not parts.netloc:
            raise ValueError(f"not an S3 URL: {url}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        unknown = set(query) - {"endpoint", "region"}
        if unknown:
            raise ValueError(f"unknown S3 URL parameter(s): {', '.join(sorted(unknown))}")
        prefix = parts.path.lstrip("/")
        if prefix and not prefix.endswith("/"):
            prefix += "/"
        return cls(parts.netloc, prefix or DEFAULT_PREFIX, query.get("endpoint"), query.get("region"))

    def _key(self, chunk_id: str) -> str:
        return self.prefix + check_id(chunk_id)

    def _head(self, chunk_id: str) -> dict[str, Any] | None:
        try:
            head: dict[str, Any] = self._client.head_object(Bucket=self.bucket, Key=self._key(chunk_id))
            return head
        except self._errors as e:
            if _missing(e):
                return None
            raise

    def put(self, chunk_id: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(chunk_id), Body=bytes(data))

    def get(self, chunk_id: str) -> bytes:
        try:
            body = self._client.get_object(Bucket=self.bucket, Key=self._key(chunk_id))["Body"]
        except self._errors as e:
            if _missing(e):
                raise ChunkNotFound(chunk_id) from None
            raise
        with body:
            data: bytes = body.read()
        return data

    def has(self, chunk_id: str) -> bool:
        return self._head(chunk_id) is not None

    def delete(self, chunk_id: str) -> bool:
        return self.remove(chunk_id) is not None

    def remove(self, chunk_id: str) -> int | None:
        head = self._head(chunk_id)
        if head is None:
            return None
        self._client.delete_object(Bucket=self.bucket, Key=self._key(chunk_id))
        return int(head["ContentLength"])

    def size(self, chunk_id: str) -> int:
        head = self._head(chunk_id)
        if head is None:
            raise ChunkNotFound(chunk_id)
        return int(head["ContentLength"])

    def modified(self, chunk_id: str) -> float:
        head = self._head(chunk_id)
        if head is None:
            raise ChunkNotFound(chunk_id)
        return float(head["LastModified"].timestamp())

    def iter_ids(self) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=self.prefix)
        for page in pages:
            for item in page.get("Contents", []):
                name = item["Key"][len(self.prefix) :]
                if ID_RE.fullmatch(name):
                    yield name

    def close(self) -> None:
        self._client.close()
