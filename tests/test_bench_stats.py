"""The knobs table's verdicts rest on bench/stats.py: the signed-rank interval, checked against its tables."""

from __future__ import annotations

import math

import pytest

from bench import stats


def critical(n: int, confidence: float = 0.95) -> int:
    """The largest rank sum whose lower tail holds at most half of 1 - confidence (-1: none)."""
    counts, tail, below, found = stats.signed_rank_counts(n), (1 - confidence) / 2, 0, -1
    for total, count in enumerate(counts):
        if (below + count) / 2**n > tail:
            break
        below += count
        found = total
    return found


def test_the_interval_is_the_textbook_one():
    """The signed-rank interval matches the published tables and R's wilcox.test(conf.int = TRUE)."""
    # Two-sided 5 % critical values of the Wilcoxon signed-rank statistic (any statistics table).
    assert {n: critical(n) for n in (6, 8, 10, 12, 20)} == {6: 0, 8: 3, 10: 8, 12: 13, 20: 52}
    assert sum(stats.signed_rank_counts(12)) == 2**12
    # R: wilcox.test(1:12, conf.int = TRUE) gives (pseudo)median 6.5, interval 4 to 9.
    found = stats.signed_rank_interval([float(x) for x in range(1, 13)])
    assert (found.estimate, found.low, found.high) == (6.5, 4.0, 9.0)
    assert found.confidence == pytest.approx(1 - 2 * 87 / 4096)  # 87 of the 4,096 patterns sum to 13 or less
    # Five pairs cannot reach 95 %: the interval is unbounded, not falsely narrow.
    assert stats.signed_rank_interval([1.0, 2.0, 3.0, 4.0, 5.0]).low == -math.inf


def test_a_ratio_doubled_and_one_halved_weigh_alike_and_one_wild_pair_moves_it_little():
    """Ratios are judged on their logarithms; a pair caught by a hiccup shifts the estimate by a rank."""
    even = stats.ratio_interval([(10.0, 20.0), (10.0, 5.0)] * 4)
    assert even.estimate == pytest.approx(0.0, abs=1e-12)
    steady = [(10.0, 15.0 + i / 10) for i in range(12)]
    wild = [*steady[:-1], (10.0, 150.0)]
    moved = stats.ratio_interval(wild).estimate
    assert moved == pytest.approx(stats.ratio_interval(steady).estimate, rel=0.01)


@pytest.mark.parametrize(
    ("low", "high", "word"),
    [
        (0.2, 0.9, "costs"),
        (-0.4, -0.1, "helps"),
        (-0.03, 0.04, "no change beyond ±5%"),
        (-0.2, 0.3, "undecided"),
    ],
)
def test_each_interval_gets_its_word(low, high, word):
    """costs / helps when the interval excludes no change; no change when inside ±5 %; else undecided."""
    assert stats.verdict(stats.Interval(0.0, low, high, 0.95), 0.05) == word
