"""runtime.compare: a planned run's outputs against the original's, as input/expected pairs."""

from __future__ import annotations

import numpy as np
import pytest

from wisefuse_plugins.runtime.compare import differences, same_outputs

CASES = [
    # the same computation summed in another order: equal
    (
        {"v": [98.4779094941355, 79.5602690839774]},
        {"v": [98.47790949413552, 79.56026908397737]},
        [],
    ),
    (0.1 + 0.2, 0.3, []),
    (np.array([1.0, 2.0]), np.array([1.0, 2.0 + 1e-13]), []),
    ({"n": 3, "label": "walking"}, {"n": 3, "label": "walking"}, []),
    # anything more is a difference, and says where
    ({"v": [1.0, 2.0]}, {"v": [1.0, 2.000001]}, ["/v[1]: 2.0 != 2.000001"]),
    ({"n": 3}, {"n": 4}, ["/n: 3 != 4"]),
    ({"a": 1}, {"a": 1, "b": 2}, [": {'a': 1} != {'a': 1, 'b': 2}"]),
    ([1, 2], (1, 2), [": [1, 2] != (1, 2)"]),
    (1.0, "1.0", [": 1.0 != '1.0'"]),
    (np.arange(3), np.arange(4), [": arrays differ"]),
    (np.array([1, 2]), np.array([1, 3]), [": arrays differ"]),
]


@pytest.mark.parametrize(("a", "b", "expected"), CASES)
def test_differences(a, b, expected) -> None:
    assert differences(a, b) == expected
    assert same_outputs(a, b) == (expected == [])
