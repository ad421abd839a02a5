"""Files as objects in an S3-compatible bucket (AWS S3, MinIO, R2, Ceph, ...), chosen by
RUNBASE_STORAGE_URL=s3://bucket/prefix.

Endpoint, region and credentials are boto3's own business: it reads AWS_ENDPOINT_URL,
AWS_REGION / AWS_DEFAULT_REGION, AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY (or a profile,
a role, ...) itself. boto3 is imported only when such a store is built: it costs ~200 ms
that local-disk installs and their CLI commands never pay.
"""
from __future__ import annotations

import os
import secrets
import threading
from typing import Iterator

from .base import SAFE_NAME, StorageUnavailable, content_type_of

#: Bytes per chunk when streaming an object through the app.
CHUNK_BYTES = 64 * 1024
#: Seconds to wait for a connection to the endpoint, and for each read from it.
CONNECT_TIMEOUT_SECONDS = 5
READ_TIMEOUT_SECONDS = 30
#: Tries per request (botocore's "standard" mode: backs off, retries throttling and 5xx).
MAX_ATTEMPTS = 3
#: Connections kept open to the endpoint, shared by the web and worker threads.
MAX_POOL_CONNECTIONS = 32
#: Outputs never change once written (files_web.CACHE_SECONDS).
OBJECT_CACHE_CONTROL = "public, max-age=31536000, immutable"
#: Error codes that mean "no such object" (GetObject says NoSuchKey, HeadObject only 404).
_MISSING = {"NoSuchKey", "404", "NotFound"}


def new_client():
    """One S3 client for the app: thread-safe, so the web and worker threads share it."""
    from botocore.config import Config

    config = Config(signature_version="s3v4", connect_timeout=CONNECT_TIMEOUT_SECONDS,
                    read_timeout=READ_TIMEOUT_SECONDS, max_pool_connections=MAX_POOL_CONNECTIONS,
                    retries={"mode": "standard", "max_attempts": MAX_ATTEMPTS})
    with _SESSION_LOCK:  # a session is not thread-safe; the clients it makes are
        return _session().client("s3", config=config)


_SESSION_LOCK = threading.Lock()
_session_cache: tuple[tuple, object] | None = None


def _session():
    """boto3's session for this process's AWS_* variables. Made anew when they change,
    else reused: a new session reads the S3 API's description again (~150 ms), which
    apps built in the same environment (the tests build many) need not pay twice."""
    global _session_cache
    import boto3

    key = tuple(sorted((name, value) for name, value in os.environ.items()
                       if name.startswith("AWS_")))
    if _session_cache is None or _session_cache[0] != key:
        _session_cache = (key, boto3.session.Session())
    return _session_cache[1]


class S3Storage:
    """Files as objects `prefix/name` in `bucket`. A PUT is atomic: readers see the whole
    object or none, so files need no temp-and-rename here."""

    def __init__(self, bucket: str, prefix: str = "", client=None):
        self.bucket = bucket
        self.prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self.client = client if client is not None else new_client()

    @property
    def location(self) -> str:
        """s3://bucket/prefix, for operators' messages."""
        return f"s3://{self.bucket}/{self.prefix}"

    def _key(self, name: str) -> str:
        if not SAFE_NAME.match(name):
            raise ValueError(f"unsafe storage name: {name!r}")
        return self.prefix + name

    def check(self) -> None:
        """At start-up: write and remove a probe object, so a bucket that is missing, not
        writable or unreachable stops the start with the bucket and the reason, instead of
        failing the first run."""
        from botocore.exceptions import BotoCoreError, ClientError

        name = f"startup-{secrets.token_hex(8)}.probe"
        where = f"RUNBASE_STORAGE_URL={self.location}: bucket {self.bucket!r}"
        try:
            self.save(name, b"")
            self.delete(name)
        except ClientError as error:
            code, message = _code(error), error.response.get("Error", {}).get("Message", "")
            if code == "NoSuchBucket":
                raise StorageUnavailable(f"{where} does not exist ({code})") from None
            raise StorageUnavailable(f"{where} cannot be written ({code}: {message})") from None
        except BotoCoreError as error:
            raise StorageUnavailable(
                f"{where} cannot be reached ({type(error).__name__}: {error})") from None

    def save(self, name: str, data: bytes) -> None:
        """Write the object with its Content-Type, whole or not at all."""
        self.client.put_object(Bucket=self.bucket, Key=self._key(name), Body=data,
                               ContentType=content_type_of(name),
                               CacheControl=OBJECT_CACHE_CONTROL)

    def read(self, name: str) -> bytes | None:
        """The object's bytes, or None if there is no such object."""
        chunks = self.stream(name)
        if chunks is None:
            return None
        try:
            return b"".join(chunks)
        finally:
            chunks.close()

    def size(self, name: str) -> int | None:
        """The object's length, or None if there is no such object."""
        from botocore.exceptions import ClientError

        if not SAFE_NAME.match(name):
            return None  # as on disk: a name we could not have made names nothing
        try:
            return self.client.head_object(Bucket=self.bucket, Key=self._key(name))["ContentLength"]
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise

    def stream(self, name: str, start: int = 0, stop: int | None = None) -> Iterator[bytes] | None:
        """Bytes `start` to `stop` of the object, fetched as they are sent (only those
        bytes are asked for); None if there is no such object."""
        from botocore.exceptions import ClientError

        if not SAFE_NAME.match(name):
            return None  # as on disk: a name we could not have made names nothing
        request = {"Bucket": self.bucket, "Key": self._key(name)}
        if start or stop is not None:
            request["Range"] = f"bytes={start}-{'' if stop is None else stop - 1}"
        try:
            body = self.client.get_object(**request)["Body"]
        except ClientError as error:
            if _code(error) in _MISSING:
                return None
            raise
        return _BodyChunks(body)

    def delete(self, name: str) -> None:
        """Remove the object (no error if there is none)."""
        self.client.delete_object(Bucket=self.bucket, Key=self._key(name))

    def presigned_url(self, name: str, seconds: int) -> str:
        """A URL anyone may GET the object at for `seconds` (signed here, no request made)."""
        return self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": self._key(name)},
            ExpiresIn=seconds)


def _code(error) -> str:
    """The S3 error code of a botocore ClientError (NoSuchBucket, AccessDenied, 404, ...)."""
    return str(error.response.get("Error", {}).get("Code", ""))


class _BodyChunks:
    """A GetObject body, in chunks as they arrive; close() gives its connection back."""

    def __init__(self, body):
        self._body = body
        self._chunks = body.iter_chunks(CHUNK_BYTES)

    def __iter__(self) -> "_BodyChunks":
        return self

    def __next__(self) -> bytes:
        return next(self._chunks)

    def close(self) -> None:
        """Stop reading (again is harmless)."""
        self._body.close()
