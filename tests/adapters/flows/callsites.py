"""Call-site shapes: how a task result reaches another task, one flow per shape.

Every task reads the files of ``folder``, so a test can change them between the trace and
a later run: a binding taken from the trace as a constant then shows as a wrong result.
Each flow returns its last call. ``a.txt`` and ``b.txt`` hold a number each (the same
one when traced, so that equal results cannot tell their producers apart), ``words.txt``
a few words.
"""

from __future__ import annotations

import os

from prefect import flow, task, unmapped
from prefect.utilities.annotations import quote

LABEL = "n"  # a module constant: a literal, the same in every run


# --------------------------------------------------------------------------- tasks


@task
def read_count(folder: str, name: str = "a.txt") -> int:
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        return int(f.read())


@task
def word_stats(folder: str, name: str = "words.txt") -> dict:
    with open(os.path.join(folder, name), encoding="utf-8") as f:
        words = f.read().split()
    return {"words": len(words), "chars": sum(len(w) for w in words)}


@task
def read_words(folder: str) -> list:
    with open(os.path.join(folder, "words.txt"), encoding="utf-8") as f:
        return f.read().split()


@task
def double(x: int) -> int:
    return 2 * x


@task
def total(a: dict, b: dict) -> int:
    return a["words"] + b["words"]


@task
def pair(a: int, b: int) -> list:
    return [a, b]


@task
def scaled(x: int, *, factor: int = 2) -> int:
    return x * factor


@task
def offset(x: int, by: int = 10) -> int:
    return x + by


@task
def summed(values: list) -> int:
    return sum(values)


@task
def from_dict(d: dict) -> int:
    return sum(d.values())


@task
def length(w: str, extra: int = 0) -> int:
    return len(w) + extra


@task
def labelled(label: str, n: int) -> str:
    return f"{label}={n}"


@task
def count(values: list) -> int:
    return len(values)


@task
def peek(x: object) -> str:
    return repr(x)


# --------------------------------------------------------------------------- flows


@flow(name="nested-call")
def nested_call(folder: str) -> int:
    return double(read_count(folder))


@flow(name="nested-calls-two")
def nested_calls_two(folder: str) -> int:
    return total(word_stats(folder), word_stats(folder))


@flow(name="variable")
def variable(folder: str) -> int:
    n = read_count(folder)
    return double(n)


@flow(name="equal-results")
def equal_results(folder: str) -> int:
    a = read_count(folder, "a.txt")
    b = read_count(folder, "b.txt")  # the same number as a when traced
    pair(a, b)
    return double(a)


@flow(name="equal-results-nested")
def equal_results_nested(folder: str) -> list:
    return pair(read_count(folder, "b.txt"), read_count(folder, "a.txt"))


@flow(name="computed")
def computed(folder: str) -> int:
    return double(read_count(folder) + 1)


@flow(name="computed-variable")
def computed_variable(folder: str) -> int:
    n = read_count(folder)
    m = n * 3
    return double(m)


@flow(name="builtin-of-result")
def builtin_of_result(folder: str) -> int:
    return double(len(read_words(folder)))


@flow(name="key-of-result")
def key_of_result(folder: str) -> int:
    stats = word_stats(folder)
    return double(stats["words"])


@flow(name="starred")
def starred(folder: str) -> list:
    return pair(*[read_count(folder, "a.txt"), read_count(folder, "b.txt")])


@flow(name="starred-literal")
def starred_literal(folder: str) -> list:
    read_count(folder)
    return pair(*[1, 2])


@flow(name="double-starred")
def double_starred(folder: str) -> int:
    return offset(**{"x": read_count(folder), "by": 1})


@flow(name="keyword-only")
def keyword_only(folder: str) -> int:
    return scaled(read_count(folder), factor=read_count(folder, "b.txt"))


@flow(name="defaults")
def defaults(folder: str) -> int:
    n = read_count(folder)
    first = offset(n)
    return offset(x=first, by=n)


@flow(name="list-of-calls")
def list_of_calls(folder: str) -> int:
    return summed([read_count(folder, "a.txt"), read_count(folder, "b.txt")])


@flow(name="dict-of-calls")
def dict_of_calls(folder: str) -> int:
    return from_dict({"a": read_count(folder), "b": 3})


@flow(name="future-nested")
def future_nested(folder: str) -> int:
    return double(read_count.submit(folder))


@flow(name="future-result")
def future_result(folder: str) -> int:
    return double(read_count.submit(folder).result())


@flow(name="futures-in-list")
def futures_in_list(folder: str) -> int:
    a = read_count.submit(folder, "a.txt")
    b = read_count.submit(folder, "b.txt")
    return summed([a, b])


@flow(name="futures-in-dict")
def futures_in_dict(folder: str) -> int:
    a = read_count.submit(folder)
    return from_dict({"a": a, "b": 1})


@flow(name="map-unmapped")
def map_unmapped(folder: str) -> int:
    lengths = length.map(read_words(folder), extra=unmapped(read_count(folder)))
    return summed(lengths)


@flow(name="map-computed")
def map_computed(folder: str) -> int:
    n = read_count(folder)
    return summed(double.map([n, n + 1]))


@flow(name="loop-over-result")
def loop_over_result(folder: str) -> int:
    sizes = [length(w) for w in read_words(folder)]
    return summed(sizes)


@flow(name="mutated")
def mutated(folder: str) -> int:
    words = read_words(folder)
    words.append("extra")
    return count(words)


@flow(name="quoted")
def quoted(folder: str) -> str:
    return peek(quote(read_count(folder)))


@flow(name="wait-for")
def wait_for(folder: str) -> int:
    first = read_count.submit(folder, "b.txt")
    return double(read_count(folder), wait_for=[first])


@flow(name="constants")
def constants(folder: str, k: int = 5) -> str:
    read_count(folder)
    size = k * 2
    return labelled(LABEL, size + 1)


@flow(name="literal-equal-to-result")
def literal_equal_to_result(folder: str) -> int:
    read_count(folder)  # returns 4 when traced, as the literal below
    return double(4)


@flow(name="branch-on-result")
def branch_on_result(folder: str) -> int:
    if read_count(folder) > 4:  # true only after the change
        return double(100)
    return double(1)


@flow(name="loop-over-constant")
def loop_over_constant(folder: str) -> int:
    for name in ["a.txt", "b.txt"]:
        last = double(read_count(folder, name))
    return offset(last)


@flow(name="helper-function")
def helper_function(folder: str) -> int:
    return _helper(folder)


def _helper(folder: str) -> int:
    return double(read_count(folder))


@flow(name="conditional-value")
def conditional_value(folder: str) -> int:
    a = read_count(folder, "a.txt")
    b = read_count(folder, "b.txt")
    return double(a if a > b else b)


@flow(name="comprehension-over-constant")
def comprehension_over_constant(folder: str) -> int:
    [labelled(name, 1) for name in ["a", "b"]]
    return offset(read_count(folder))
