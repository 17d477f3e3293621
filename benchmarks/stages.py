"""One benchmark stage, run by `run.py` in its own process so that its peak RSS is its own.

    python benchmarks/stages.py scan     --log LOG --result OUT.json
    python benchmarks/stages.py groupby  --log LOG --result OUT.json
    python benchmarks/stages.py ingest   --log LOG --db STORE --result OUT.json
    python benchmarks/stages.py baseline --db STORE --result OUT.json
    python benchmarks/stages.py caching  --db STORE --result OUT.json   (any advisor.levers.<name>)

`seconds` covers the stage's work only (imports and interpreter start-up excluded); `parts` splits
it where the stage has natural pieces. `--cprofile FILE` runs the stage under cProfile.
"""

from __future__ import annotations

import argparse
import cProfile
import importlib
import importlib.util
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

# Only the usage leaves are typed: DuckDB still parses every line in full (it must find the
# object's end), but builds no columns for the prompt text, as a minimal usage-only reader would.
# records = true matters: under the default 'auto', one non-object line (e.g. a JSON array) makes
# DuckDB 2.0 return every `response.usage` of its batch as NULL.
SCAN_COLUMNS = (
    "STRUCT(usage STRUCT(prompt_tokens BIGINT, completion_tokens BIGINT, input_tokens BIGINT, "
    "output_tokens BIGINT, cache_read_input_tokens BIGINT, cache_creation_input_tokens BIGINT))"
)
SCAN_SQL = """
SELECT count(*) AS rows,
       sum(coalesce(u.prompt_tokens, u.input_tokens + coalesce(u.cache_read_input_tokens, 0)
                                     + coalesce(u.cache_creation_input_tokens, 0))) AS prompt,
       sum(coalesce(u.completion_tokens, u.output_tokens)) AS completion
FROM (SELECT response.usage AS u
      FROM read_json({path}, format = 'newline_delimited', records = true,
                     ignore_errors = true, columns = {{'response': '{columns}'}}))
"""


# The user's notebook alternative to `advisor analyze` (issue 16): tokens by feature and model,
# with p95 latency, distinct users and distinct system prompts, so that it reads every prompt
# text once. Written as a user would; only the fields it names are typed. A system prompt is the
# top-level `system` (Anthropic; as its JSON text when sent as content blocks), else the first
# message when its role is system.
GROUPBY_COLUMNS = (
    "{'feature': 'VARCHAR', 'user': 'VARCHAR', 'latency_ms': 'DOUBLE', "
    "'request': 'STRUCT(model VARCHAR, system VARCHAR, messages STRUCT(role VARCHAR, "
    "content VARCHAR)[])', 'response': '" + SCAN_COLUMNS + "'}"
)
GROUPBY_SQL = """
SELECT feature, model, count(*) AS requests,
       sum(coalesce(u.prompt_tokens, u.input_tokens + coalesce(u.cache_read_input_tokens, 0)
                                     + coalesce(u.cache_creation_input_tokens, 0))) AS prompt,
       sum(coalesce(u.completion_tokens, u.output_tokens)) AS completion,
       quantile_cont(latency_ms, 0.95) AS p95_latency_ms,
       count(DISTINCT "user") AS users,
       count(DISTINCT system_prompt) AS system_prompts
FROM (SELECT feature, request.model AS model, latency_ms, "user", response.usage AS u,
             coalesce(request.system, CASE WHEN request.messages[1].role = 'system'
                                           THEN request.messages[1].content END) AS system_prompt
      FROM read_json({path}, format = 'newline_delimited', records = true,
                     ignore_errors = true, columns = {columns}))
GROUP BY ALL
ORDER BY ALL
"""


@dataclass
class StageResult:
    stage: str
    status: str = "ok"  # ok | skipped
    seconds: float = 0.0
    parts: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    note: str = ""
    vm_hwm_bytes: int | None = None  # the process's own peak RSS, from /proc/self/status


def _sql_str(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def scan_sql(log: Path) -> str:
    return SCAN_SQL.format(path=_sql_str(str(log)), columns=SCAN_COLUMNS)


def groupby_sql(log: Path) -> str:
    return GROUPBY_SQL.format(path=_sql_str(str(log)), columns=GROUPBY_COLUMNS)


class Clock:
    """Named laps of one stage."""

    def __init__(self) -> None:
        self.parts: dict[str, float] = {}
        self._last = time.perf_counter()
        self.start = self._last

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.parts[name] = round(now - self._last, 3)
        self._last = now
        print(f"  {name}: {self.parts[name]:.1f} s", file=sys.stderr, flush=True)

    @property
    def total(self) -> float:
        return round(time.perf_counter() - self.start, 3)


def run_scan(log: Path) -> StageResult:
    import duckdb

    clock = Clock()
    con = duckdb.connect(config={"autoinstall_known_extensions": "false"})
    row = con.execute(scan_sql(log)).fetchone()
    con.close()
    assert row is not None
    return StageResult(
        "scan",
        seconds=clock.total,
        counts={"rows": row[0], "prompt_tokens": row[1], "completion_tokens": row[2]},
        note="read_json newline_delimited, records, ignore_errors; only response.usage typed",
    )


def run_groupby(log: Path) -> StageResult:
    """The notebook's GROUP BY query, with DuckDB's defaults (all cores, its own memory limit)."""
    import duckdb

    clock = Clock()
    con = duckdb.connect(config={"autoinstall_known_extensions": "false"})
    rows = con.execute(groupby_sql(log)).fetchall()
    con.close()
    return StageResult(
        "groupby",
        seconds=clock.total,
        counts={
            "groups": len(rows),
            "rows": sum(r[2] for r in rows),
            "prompt_tokens": sum(r[3] or 0 for r in rows),
            "completion_tokens": sum(r[4] or 0 for r in rows),
            "max_system_prompts_per_group": max((r[7] for r in rows), default=0),
        },
        note="tokens by feature and model, p95 latency, distinct users and system prompts",
    )


def run_ingest(log: Path, db: Path) -> StageResult:
    from advisor import api

    for stale in (db, db.with_name(db.name + ".wal")):
        stale.unlink(missing_ok=True)
    shutil.rmtree(db.with_name(db.name + ".tmp"), ignore_errors=True)  # DuckDB spill folder
    clock = Clock()
    report = api.ingest([str(log)], db)
    seconds = clock.total
    totals = report.totals
    return StageResult(
        "ingest",
        seconds=seconds,
        counts={
            "rows": totals.rows,
            "requests": totals.ingested,
            "quarantined": totals.quarantined,
            "duplicates": totals.duplicates,
            "store_bytes": db.stat().st_size,
        },
    )


def run_baseline(db: Path) -> StageResult:
    """Model resolution, token filling and pricing, as `api.build_analysis` runs them."""
    from advisor import api, baseline, store, tokens
    from advisor.ingest import IngestReport
    from advisor.levers.base import SimOptions

    prices = api.load_price_table()
    con = store.connect(db)
    clock = Clock()
    baseline.resolve_models(con, prices, SimOptions().deployments)
    clock.lap("resolve_models")
    fill = tokens.fill_token_counts(con, {key: m.encoding for key, m in prices.models.items()})
    clock.lap("fill_token_counts")
    baseline.price_requests(con, prices)
    clock.lap("price_requests")
    baseline.build_period(con)
    coverage = baseline.build_coverage(con, IngestReport(), fill.calibration, "", [])
    summary = baseline.build_baseline(con)
    clock.lap("rollups")
    seconds = clock.total
    con.close()
    return StageResult(
        "baseline",
        seconds=seconds,
        parts=clock.parts,
        counts={
            "requests": coverage.requests,
            "priced_requests": coverage.priced_requests,
            "unpriced_requests": coverage.unpriced_requests,
            "tokenized": fill.tokenized,
            "estimated": fill.estimated,
            "unbilled": fill.unbilled,
            "baseline_cost": str(summary.cost),
        },
    )


def run_analyze(log: Path, db: Path) -> StageResult:
    """The main job as a user runs it (`advisor analyze LOG`): ingest into a fresh store, price,
    every lever standalone and chained, analysis.json, the report and the exports."""
    from advisor import api

    out = db.with_name("analyze")
    shutil.rmtree(out, ignore_errors=True)
    clock = Clock()
    result = api.analyze([str(log)], out_dir=out)
    seconds = clock.total
    analysis = result.analysis
    return StageResult(
        "analyze",
        seconds=seconds,
        counts={
            "requests": analysis.coverage.requests,
            "levers": len(analysis.levers),
            "combined_saving": str(analysis.combined.saving),
            "files": len(result.files),
        },
    )


def run_guardrails(db: Path) -> StageResult:
    """Anomalies, then limits derived and back-tested, on the priced store (after baseline)."""
    from advisor import guardrails, store
    from advisor.ruleset import default_rules_dir

    con = store.connect(db)
    clock = Clock()
    found, anomalies = guardrails.build(con, default_rules_dir())
    seconds = clock.total
    con.close()
    return StageResult(
        "guardrails",
        seconds=seconds,
        counts={
            "limits_set": sum(limit.status == "set" for limit in found.limits),
            "limits_too_thin": sum(limit.status != "set" for limit in found.limits),
            "anomalies": len(anomalies),
        },
    )


class TimedLever:
    """Wraps a lever so that `simulate` runs it as usual while its prepare, replay and describe
    are timed."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.id: str = inner.id
        self.title: str = inner.title
        self.seconds = 0.0

    def _timed(self, method: str, *args: Any) -> Any:
        started = time.perf_counter()
        try:
            return getattr(self.inner, method)(*args)
        finally:
            self.seconds += time.perf_counter() - started

    def prepare(self, ctx: Any) -> None:
        self._timed("prepare", ctx)

    def replay(self, ctx: Any, state: Any, out: str) -> Any:
        return self._timed("replay", ctx, state, out)

    def describe(self, ctx: Any, base: Any, alone: Any) -> Any:
        return self._timed("describe", ctx, base, alone)


def find_blocks(details: Any) -> int | None:
    """A block count the lever reports itself (an int under a key ending in 'blocks'), if any."""
    if isinstance(details, dict):
        for key, value in details.items():
            if str(key).lower().endswith("blocks") and isinstance(value, int):
                return value
        for value in details.values():
            found = find_blocks(value)
            if found is not None:
                return found
    return None


class BlockCounter:
    """Counts the token blocks `advisor.levers.caching.prefix.build` hashes while a lever runs
    (if it uses it)."""

    def __init__(self) -> None:
        self.blocks = 0
        self.builds = 0
        self._module: Any = None
        self._original: Any = None

    def __enter__(self) -> BlockCounter:
        if importlib.util.find_spec("advisor.levers.caching.prefix") is None:
            return self
        self._module = importlib.import_module("advisor.levers.caching.prefix")
        self._original = original = self._module.build

        def build(*args: Any, **kwargs: Any) -> Any:
            model = original(*args, **kwargs)
            self.builds += 1
            self.blocks += len(getattr(model, "block_hash", ()))
            return model

        self._module.build = build
        return self

    def __exit__(self, *exc: object) -> None:
        if self._module is not None:
            self._module.build = self._original


def run_lever(db: Path, name: str) -> StageResult:
    """One lever's standalone run on the baseline state, through `advisor.simulate`."""
    from advisor import api, store
    from advisor.levers import registry
    from advisor.levers.base import LeverContext, SimOptions
    from advisor.ruleset import default_rules_dir
    from advisor.simulate import simulate

    if name not in registry.BUILT:
        return StageResult(name, status="skipped", note=f"lever {name} is not built yet")
    lever = TimedLever(registry.select((name,))[0])
    con = store.connect(db)
    ctx = LeverContext(con, api.load_price_table(), default_rules_dir(), SimOptions())
    clock = Clock()
    with BlockCounter() as counter:
        sim = simulate(ctx, levers=[lever])
    seconds = clock.total
    con.close()
    outcome = sim.levers[0]
    counts: dict[str, Any] = {
        "affected_requests": outcome.affected_requests,
        "standalone_saving": str(outcome.standalone_saving),
        "simulate_seconds": seconds,
    }
    blocks = find_blocks(outcome.findings.details.model_dump(mode="json"))
    if blocks is None and counter.blocks:
        blocks = counter.blocks
        counts["blocks_source"] = f"advisor.levers.caching.prefix.build ({counter.builds} builds)"
    if blocks is not None:
        counts["blocks"] = blocks
    return StageResult(name, seconds=round(lever.seconds, 3), counts=counts)


def vm_hwm_bytes() -> int | None:
    try:
        status = Path("/proc/self/status").read_text()
    except OSError:
        return None
    for line in status.splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("stage")
    parser.add_argument("--log", type=Path)
    parser.add_argument("--db", type=Path)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--cprofile", type=Path, help="write cProfile stats of the stage here")
    args = parser.parse_args(argv)
    jobs: dict[str, Callable[[], StageResult]] = {
        "scan": lambda: run_scan(args.log),
        "groupby": lambda: run_groupby(args.log),
        "ingest": lambda: run_ingest(args.log, args.db),
        "baseline": lambda: run_baseline(args.db),
        "analyze": lambda: run_analyze(args.log, args.db),
        "guardrails": lambda: run_guardrails(args.db),
    }
    job = jobs.get(args.stage, lambda: run_lever(args.db, args.stage))
    if args.cprofile:
        profiler = cProfile.Profile()
        result = profiler.runcall(job)
        profiler.dump_stats(args.cprofile)
    else:
        result = job()
    result.vm_hwm_bytes = vm_hwm_bytes()
    args.result.write_text(json.dumps(asdict(result), indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
