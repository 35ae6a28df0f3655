"""Futures from .submit(), and an ordering-only wait_for."""

from __future__ import annotations

from prefect import flow, task


@task
def fetch(url: str) -> dict:
    return {"url": url, "body": "lorem ipsum dolor sit amet"}


@task
def parse(page: dict) -> list[str]:
    return page["body"].split()


@task
def notify(message: str) -> None:
    print(message)


@task
def index(words: list[str]) -> dict:
    return {w: len(w) for w in words}


@flow(name="submit")
def submit_flow(url: str = "https://example.org") -> dict:
    page = fetch.submit(url)
    words = parse.submit(page)
    ping = notify.submit("starting")
    return index.submit(words, wait_for=[ping]).result()
