"""Chapter 05's latency row has its yardstick: the reference runs beside it, and every task is counted.

The chapter's p50 is read against the reference's (bench/celery_reference: the same path with
none of the chapter's code), so the reference must do what the bench says: run as its own
processes, answer the bench's own pages, every task acked and answered once, the two sides
taking turns in blocks. The summary sets the two side by side with the gap, and still reads a
record made before the reference existed.
"""

from __future__ import annotations

import copy
import dataclasses
import json

from bench import celery_tasks, common, task_pages
from bench.task_pages import Timing

SIDES = ("chapter", "reference")


def test_the_reference_answers_every_task_of_the_bench_pages_once_in_blocks_taking_turns(bench):
    """The reference acks each `start` of the bench's pages and sends it one `progress` and one `result`.

    It runs as its own Redis, web instance and Celery worker; the two sides take turns, a block each.
    """
    reference = celery_tasks.Reference.start(bench)
    # Two sets of the bench's pages on the reference, taking turns as the chapter's and the reference's do.
    sides = {side: task_pages.open_pages(reference, [f"{side}-1", f"{side}-2"]) for side in SIDES}
    settings = dataclasses.replace(celery_tasks.QUICK, warmup_tasks=2, latency_tasks=7, latency_block=3)

    timings, warmup = celery_tasks._take_turns_in_blocks(sides, settings, common.Budget(30))

    assert warmup == {}
    for found in timings.values():
        assert celery_tasks._delivery(found) == {
            "tasks": 7,
            "results": 7,
            "refused": 0,
            "repeated_results": 0,
        }
        assert all(t.acked and t.progress and t.result for t in found)
        assert {t.worker.split("@")[0] for t in found} == {"reference-worker-1"}
    # Blocks of 3, 3 and 1: the chapter's block, then the reference's, in turn.
    turns = [side for _, side in sorted((t.sent, side) for side, found in timings.items() for t in found)]
    assert turns == [side for block in (3, 3, 1) for side in SIDES for _ in range(block)]
    # Three pairs of blocks are too few for a signed-rank interval at 95 %: the gap says none.
    gap = celery_tasks._gap(timings["chapter"], timings["reference"], settings.latency_block)
    assert gap["block_pairs"] == 3 and gap["by_block"] is None


def timings(first_ms: float, count: int, instance: str) -> list[Timing]:
    """Tasks whose `result` came `first_ms`, then 0.01 ms more each, after their `start`."""
    made = []
    for i in range(count):
        done = (first_ms + 0.01 * i) / 1000
        made.append(
            Timing(0.0, instance, acked=done / 2, task=f"t{i}", progress=done, result=done, worker="w/1")
        )
    return made


def test_the_summary_sets_the_reference_beside_the_chapter_and_still_reads_older_records():
    """The summary sets the reference beside the chapter, with the gap; a record from before it still reads.

    The reference's p50 / p99 beside each of the chapter's stages, the gap at p50, split before and
    after the ack, and its interval block against block, the load average over the scenario.
    """
    stored = json.loads((common.DOCS_BENCH / f"{celery_tasks.NAME}.json").read_text())
    older = copy.deepcopy(stored)
    for key in ("reference", "gap", "load_average"):
        older["latency"].pop(key, None)
    older["settings"].pop("latency_block", None)
    assert "The reference (`bench" not in celery_tasks.summary_markdown(older)

    chapter, reference = timings(5.0, 40, "web-1"), timings(3.0, 40, "reference-web")
    record = copy.deepcopy(older)
    record["settings"]["latency_block"] = 5
    record["latency"] = {
        **celery_tasks._latency_report(chapter, ["web-1"]),
        "load_average": {"start": [1.5, 0.75, 0.25], "end": [1.75, 1.0, 0.5]},
        "reference": celery_tasks._latency_report(reference, ["reference-web"]),
        "gap": celery_tasks._gap(chapter, reference, 5),
    }
    assert record["latency"]["gap"]["start_to_result_p50_ms"] == 2.0
    # acked at half of each task's time: the legs split the gap evenly
    assert (
        record["latency"]["gap"]["start_to_ack_p50_ms"],
        record["latency"]["gap"]["ack_to_result_p50_ms"],
    ) == (1.0, 1.0)
    assert record["latency"]["gap"]["by_block"]["estimate_ms"] == 2.0
    text = celery_tasks.summary_markdown(record)

    assert "| `start` emit to `result`: end to end | 40 | 5.2 | 5.39 | 5.39 | 3.2 / 3.39 | 2.0 |" in text
    assert "**The chapter's p50 minus the reference's, `start` to `result`: 2.0 ms**" in text
    assert "Block against block (8 pairs): 2.0 ms" in text
    assert (
        "Before the ack, in the web instance's `start` handler: 1.0 ms;"
        " after it, the worker's side and the emits: 1.0 ms." in text
    )
    assert "1.5, 0.75, 0.25 at its start, 1.75, 1.0, 0.5 at its end" in text
    assert celery_tasks.headline(record)["the reference's p50 (ms)"] == "3.2"
