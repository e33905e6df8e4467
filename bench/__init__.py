"""The load bench: `python -m bench 02` (or `nox -s bench -- 02`) measures a chapter under load.

Each chapter's scenarios live in their own module (async_modes for 02,
redis_scaling for 03). They start the servers through the lab bench (every
process killed on exit), drive them with the lean load client
(bench/loadclient.py) and write what they measured to docs/bench/: a JSON
record with the machine's details, PNG plots, and a markdown summary the docs
include, so no figure on the site is typed by hand. bench/report.py writes the
summaries from the records alone, and keeps each machine's latest full run in
docs/bench/runs/<NAME>/, so a run elsewhere adds to the comparison instead of
replacing the figures. docs/bench.md explains the method.
"""
