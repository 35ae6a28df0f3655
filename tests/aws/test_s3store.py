"""The S3 store against moto: same keys and first-write-wins semantics as the local store."""

from __future__ import annotations

import sys
import threading

import pytest

from wisefuse_plugins.errors import MissingExtraError
from wisefuse_plugins.runtime import store as st
from wisefuse_plugins.runtime.s3store import S3Store


def test_round_trip_list_and_delete(bucket):
    store = st.open_store(f"s3://{bucket}/data/")
    assert isinstance(store, S3Store) and store.url == f"s3://{bucket}/data"
    written, size = st.put(store, st.output_key("r1", "make"), [1, 2, 3], "make")
    assert written and size > 0
    assert st.get(store, "runs/r1/make/out.pkl") == [1, 2, 3]
    assert store.exists("runs/r1/make/out.pkl") and not store.exists("runs/r1/make/i0.pkl")
    for i in range(3):
        store.put_bytes(f"runs/r1/sq/i{i}.pkl", b"x")
    store.put_bytes("runs/r1/sq2/i0.pkl", b"y")  # a sibling whose name extends "sq"
    assert store.list("runs/r1/sq") == [f"runs/r1/sq/i{i}.pkl" for i in range(3)]
    assert len(store.list("")) == 5
    assert store.delete_prefix("runs/r1/sq") == 3
    assert store.list("runs/r1/sq") == [] and store.exists("runs/r1/sq2/i0.pkl")
    with pytest.raises(st.StoreError, match="no value"):
        store.get_bytes("runs/r1/sq/i0.pkl")
    # the keys really live under the prefix in the bucket
    raw = store.client.list_objects_v2(Bucket=bucket)["Contents"]
    assert all(obj["Key"].startswith("data/runs/") for obj in raw)


def test_create_if_absent_first_write_wins(bucket):
    store = S3Store(bucket, "p")
    assert store.put_bytes("a/b.pkl", b"1") is True
    assert store.put_bytes("a/b.pkl", b"2") is False
    assert store.get_bytes("a/b.pkl") == b"1"
    # racing writers: exactly one conditional PUT wins
    wins: list[bool] = []
    barrier = threading.Barrier(6)

    def writer(i: int) -> None:
        barrier.wait()
        wins.append(store.put_bytes("race/k.pkl", str(i).encode()))

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(wins) == [False] * 5 + [True]


def test_traversal_and_bad_urls_rejected(bucket):
    store = S3Store(bucket, "p")
    for key in ["../x", "/abs", "a/../../b", "a//b", "", "a/.."]:
        with pytest.raises(st.StoreError):
            store.put_bytes(key, b"x")
    with pytest.raises(st.StoreError):
        store.delete_prefix("../")
    with pytest.raises(st.StoreError):
        S3Store(bucket, "../up")
    with pytest.raises(st.StoreError, match="bucket"):
        st.open_store("s3:///nobucket")


def test_paginated_list_and_batched_delete(bucket, monkeypatch):
    from wisefuse_plugins.runtime import s3store

    monkeypatch.setattr(s3store, "DELETE_BATCH", 7)  # S3's is 1000: same code path, fewer keys
    store = S3Store(bucket, page_size=7)
    keys = [f"many/k{i:02d}.pkl" for i in range(20)]  # three pages, three delete batches
    for k in keys:
        store.put_bytes(k, b"")
    assert store.list("many") == keys
    assert store.delete_prefix("many") == 20
    assert store.list("many") == []


def test_missing_boto3_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "boto3", None)  # makes `import boto3` fail
    with pytest.raises(MissingExtraError) as info:
        S3Store("bucket", "p")
    assert info.value.extra == "aws" and "wisefuse-plugins[aws]" in (info.value.hint or "")
