"""The size of a whole plan's next part, from how long the last one took."""

from __future__ import annotations

import pytest

from jobs.planning import CHUNK, SMALLEST_PART, part_size


@pytest.mark.parametrize(
    ("size", "seconds", "expected", "why"),
    [
        (100, 0.25, 100, "on target: unchanged"),
        (100, 0.5, 50, "twice too long: halved"),
        (100, 25.0, SMALLEST_PART, "a very slow part: never below the smallest"),
        (100, 0.01, 200, "a quick part: at most twice as many next"),
        (100, 0.0, 200, "no measurable time: at most twice as many"),
        (800, 0.01, CHUNK, "never above CHUNK"),
        (CHUNK, 0.0, CHUNK, "never above CHUNK, even with no time"),
        (SMALLEST_PART, 10.0, SMALLEST_PART, "already the smallest"),
    ],
)
def test_part_size(size: int, seconds: float, expected: int, why: str) -> None:
    assert part_size(size, seconds) == expected, why


def test_part_size_target() -> None:
    # Half a second a part wanted, a hundred people took a quarter: twice as many next.
    assert part_size(100, 0.25, target=0.5) == 200
