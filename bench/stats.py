"""How sure a paired comparison is: the Hodges-Lehmann estimate and its signed-rank interval.

The knobs bench measures a change against the baseline as interleaved pairs of bursts, each
pair seconds apart, so the machine's drift between runs minutes apart (17 % between
neighbouring baseline runs, at the median) mostly cancels inside a pair. What is left is the
pairs' own scatter, and one burst caught by a hiccup now and then.

For that, the Wilcoxon signed-rank interval rather than a bootstrap: it is exact and
distribution-free for any number of pairs (it assumes only that the differences scatter
symmetrically about their centre), one outlying pair moves it by one rank and no more, and a
percentile bootstrap of a dozen pairs is known to come out too narrow. The estimate that goes
with it is the Hodges-Lehmann one: the median of all the pairwise means of the differences
(the Walsh averages). Lehmann, *Nonparametrics* (1975), chapter 4; the interval is the one R's
`wilcox.test(x, conf.int = TRUE)` gives, without R's normal approximation past 50 values.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Interval:
    """The centre of the differences, and an interval that holds it with probability `confidence`."""

    estimate: float
    low: float
    high: float
    confidence: float  # what the interval really achieves: a few pairs cannot reach 95 % exactly


def signed_rank_counts(n: int) -> list[int]:
    """counts[t]: how many of the 2**n sign patterns give a signed-rank sum of t (ranks 1..n)."""
    counts = [1] + [0] * (n * (n + 1) // 2)
    for rank in range(1, n + 1):
        for total in range(len(counts) - 1, rank - 1, -1):
            counts[total] += counts[total - rank]
    return counts


def signed_rank_interval(differences: list[float], confidence: float = 0.95) -> Interval:
    """The Hodges-Lehmann estimate of the differences' centre, and its signed-rank interval.

    The interval runs from the (c+1)-th smallest Walsh average to the (c+1)-th largest, c the
    largest rank sum whose lower tail holds at most half of 1 - `confidence`. Too few
    differences for any such c (five or fewer at 95 %): an unbounded interval.
    """
    n = len(differences)
    if n == 0:
        raise ValueError("no differences")
    walsh = sorted((differences[i] + differences[j]) / 2 for i in range(n) for j in range(i, n))
    counts, tail = signed_rank_counts(n), (1 - confidence) / 2
    critical, below = -1, 0
    for total, count in enumerate(counts):
        if (below + count) / 2**n > tail:
            break
        below += count
        critical = total
    estimate = statistics.median(walsh)
    if critical < 0:
        return Interval(estimate, -math.inf, math.inf, 1.0)
    achieved = 1 - 2 * below / 2**n
    return Interval(estimate, walsh[critical], walsh[len(walsh) - critical - 1], achieved)


def ratio_interval(pairs: list[tuple[float, float]], confidence: float = 0.95) -> Interval:
    """For (baseline, changed) pairs: the change as a share (+0.1 is 10 % more), with its interval.

    Worked on the logarithms of the ratios, so +100 % and -50 % weigh alike; given back as shares.
    """
    logs = [math.log(changed / baseline) for baseline, changed in pairs]
    found = signed_rank_interval(logs, confidence)
    return Interval(
        math.expm1(found.estimate), math.expm1(found.low), math.expm1(found.high), found.confidence
    )


def verdict(interval: Interval, smallest: float) -> str:
    """costs / helps when the interval lies wholly above / below no change; no change (within
    ±`smallest`) when it lies wholly inside that band; undecided when it is wider than it can say."""
    if interval.low > 0:
        return "costs"
    if interval.high < 0:
        return "helps"
    if -smallest < interval.low and interval.high < smallest:
        return f"no change beyond ±{smallest:.0%}"
    return "undecided"
