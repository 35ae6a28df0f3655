"""The store on S3: the same keys and first-write-wins semantics as the local directory store.

``s3://bucket/prefix`` holds ``prefix/runs/<run>/<stage>/...`` (see
:mod:`wisefuse_plugins.runtime.store`). Create-if-absent is one conditional PUT
(``If-None-Match: *``, which S3 has honoured since 2024-08): of two invocations racing to
write the same output, exactly one wins and the other gets ``412 PreconditionFailed``, so
a retried invocation never overwrites what a finished one wrote.

boto3 is imported when a store is opened, not with this module's package, so
``import wisefuse_plugins`` works without the ``aws`` extra. Credentials come from
boto3's usual chain (environment, profile, the Lambda execution role) and are never
logged or stored; ``AWS_ENDPOINT_URL`` (e.g. a moto server) is honoured by boto3 itself.
"""

from __future__ import annotations

import time
from typing import Any

from wisefuse_plugins.errors import MissingExtraError
from wisefuse_plugins.runtime.keys import StoreError, check_key

#: S3's DeleteObjects takes at most this many keys per call.
DELETE_BATCH = 1000
#: A concurrent conditional write to the same key answers 409; these many tries, then give up.
CONFLICT_RETRIES = 5


def boto3_module(feature: str) -> Any:
    """``import boto3``, or a one-line error that names the ``aws`` extra."""
    try:
        import boto3
    except ImportError:
        raise MissingExtraError("boto3", "aws", feature) from None
    return boto3


def _code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _status(err: Exception) -> int:
    response = getattr(err, "response", None) or {}
    return int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)


class S3Store:
    """Values under ``s3://bucket/prefix``; implements :class:`~wisefuse_plugins.runtime.store.Store`."""

    def __init__(
        self, bucket: str, prefix: str = "", *, client: Any = None, page_size: int = 1000
    ) -> None:
        if not bucket:
            raise StoreError("an S3 store needs a bucket", hint="use s3://bucket/prefix")
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        if self.prefix:
            check_key(self.prefix)
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        if client is None:
            client = boto3_module("the S3 store").client("s3")
        self.client = client
        self.page_size = page_size

    def _key(self, key: str) -> str:
        check_key(key)
        return f"{self.prefix}/{key}" if self.prefix else key

    def _dir(self, prefix: str) -> str:
        """The S3 prefix of a store 'directory': ``a/b`` lists ``a/b/...``, never ``a/bc``."""
        prefix = prefix.strip("/")
        if not prefix:
            return f"{self.prefix}/" if self.prefix else ""
        return self._key(prefix) + "/"

    def put_bytes(self, key: str, data: bytes) -> bool:
        full = self._key(key)
        for attempt in range(CONFLICT_RETRIES):
            try:
                self.client.put_object(Bucket=self.bucket, Key=full, Body=data, IfNoneMatch="*")
                return True
            except Exception as err:
                code, status = _code(err), _status(err)
                if code == "PreconditionFailed" or status == 412:
                    return False  # another writer got there first: first write wins
                if code == "ConditionalRequestConflict" or status == 409:
                    time.sleep(0.05 * 2**attempt)  # a racing conditional write is in flight
                    continue
                raise
        raise StoreError(
            f"writing {key!r} in {self.url} kept conflicting with concurrent writes",
            hint="retry the invocation; the first complete write will be kept",
        )

    def get_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"].read()
        except Exception as err:
            if _code(err) in {"NoSuchKey", "404"} or _status(err) == 404:
                raise StoreError(f"no value at {key!r} in store {self.url}") from None
            raise

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
            return True
        except Exception as err:
            if _code(err) in {"404", "NoSuchKey", "NotFound"} or _status(err) == 404:
                return False
            raise

    def list(self, prefix: str) -> list[str]:
        """Keys under the 'directory' ``prefix`` (relative to the store), sorted."""
        base = self._dir(prefix)
        strip = len(self.prefix) + 1 if self.prefix else 0
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        pages = paginator.paginate(
            Bucket=self.bucket, Prefix=base, PaginationConfig={"PageSize": self.page_size}
        )
        for page in pages:
            keys.extend(obj["Key"][strip:] for obj in page.get("Contents", []))
        return sorted(keys)

    def delete_prefix(self, prefix: str) -> int:
        keys = self.list(check_key(prefix.strip("/")))
        size = DELETE_BATCH
        for start in range(0, len(keys), size):
            batch = keys[start : start + size]
            answer = self.client.delete_objects(
                Bucket=self.bucket,
                Delete={"Objects": [{"Key": self._key(k)} for k in batch], "Quiet": True},
            )
            if answer.get("Errors"):
                first = answer["Errors"][0]
                raise StoreError(
                    f"deleting {len(answer['Errors'])} key(s) under {prefix!r} in {self.url} failed: "
                    f"{first.get('Code')}: {first.get('Message')}"
                )
        return len(keys)
