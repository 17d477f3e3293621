"""Scale benchmark: advisor's stages on one generated log, as ratios to DuckDB baselines.

    python benchmarks/run.py                                   # 1,000,000 requests
    python benchmarks/run.py --profile heavy --requests 200000 --stages ingest,baseline
    python benchmarks/run.py --log my-logs.jsonl
    python benchmarks/run.py --profile heavy --sizes 100000,1000000,5000000   # memory flatness

The machine is shared and noisy, so absolute seconds mean little: every stage is reported as a
ratio to two queries over the same file measured in the same run (before the stages and again
after them; the ratio uses their mean): the bare scan, and the GROUP BY a user would write in a
notebook instead of running advisor (`stages.GROUPBY_SQL`). Each stage runs in its own process
(benchmarks/stages.py) so that its peak RSS is its own. Writes `results.json` into `--out`
(default benchmarks/out/).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generate_log  # sibling modules: benchmarks/ is not a package
import stages

HERE = Path(__file__).resolve().parent

STAGES = ("ingest", "baseline", "caching", "tiering", "guardrails", "analyze")  # or a lever id
DEFAULT_STAGES = "ingest,baseline,caching,tiering,guardrails,analyze"
OWN_STORE = ("analyze",)  # stages that ingest into a store of their own
REFERENCES = ("scan", "groupby")  # run before the stages and again after them
TARGET_RATIO = 3.0  # issue 16: `advisor analyze` within 3x the notebook's GROUP BY
TARGET_RSS = 2 << 30  # and peak RSS at most 2 GiB
GZIP_FROM = 5_000_000  # --sizes: logs this big are generated as .jsonl.gz (--gzip-from)
TIKTOKEN_CACHE = HERE.parent.parent / "shared" / "tiktoken-cache"  # ../shared beside the repo


@dataclass
class Measured:
    """One stage as the parent saw it: the child's report plus its process-level figures."""

    stage: str
    status: str
    seconds: float
    ratio: float | None = None  # x the bare scan
    groupby_ratio: float | None = None  # x the notebook's GROUP BY
    peak_rss_bytes: int = 0
    process_seconds: float = 0.0  # wall time of the whole child, start-up and imports included
    requests_per_s: float | None = None
    blocks_per_s: float | None = None
    parts: dict[str, float] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)
    note: str = ""


@dataclass
class Limits:
    """A guard for a shared machine: a stage above either limit is killed and reported failed."""

    rss_bytes: int
    seconds: float


def _rss_of(pid: int) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in status.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def run_stage(
    stage: str, out: Path, log: Path, db: Path, limits: Limits, cprofile: bool = False
) -> Measured:
    """Run one stage in a child process; its peak RSS comes from wait4 on that child alone."""
    result = out / f"stage-{stage}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "stages.py"), stage, "--log", str(log), "--db", str(db),
           "--result", str(result)]  # fmt: skip
    if cprofile:
        cmd += ["--cprofile", str(out / f"profile-{stage}.prof")]
    print(f"[{time.strftime('%H:%M:%S')}] {stage} ...", flush=True)
    started = time.perf_counter()
    proc = subprocess.Popen(cmd)
    killed, sampled = "", 0
    while True:
        pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            break
        sampled = max(sampled, _rss_of(proc.pid))
        elapsed = time.perf_counter() - started
        if not killed and (sampled > limits.rss_bytes or elapsed > limits.seconds):
            what = "RSS" if sampled > limits.rss_bytes else "time"
            killed = (f"killed at {elapsed:.0f} s: {what} limit "
                      f"({_gib(limits.rss_bytes)}, {limits.seconds:.0f} s) exceeded")  # fmt: skip
            proc.kill()
        time.sleep(0.2)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    peak = max(usage.ru_maxrss * 1024, sampled)  # ru_maxrss is in KiB on Linux
    if killed or proc.returncode != 0:
        note = killed or f"exit {proc.returncode}: {' '.join(cmd)}"
        print(f"  {stage} FAILED: {note}", flush=True)
        return Measured(stage, "failed", round(wall, 3), peak_rss_bytes=peak,
                        process_seconds=round(wall, 3), note=note)  # fmt: skip
    child = json.loads(result.read_text())
    print(f"  {stage}: {child['seconds']:.1f} s, peak RSS {_gib(peak)}", flush=True)
    return Measured(
        stage=stage,
        status=child["status"],
        seconds=child["seconds"],
        peak_rss_bytes=max(peak, child.get("vm_hwm_bytes") or 0),
        process_seconds=round(wall, 3),
        parts=child["parts"],
        counts=child["counts"],
        note=child["note"],
    )


def warm_page_cache(log: Path) -> float:
    """Read the file once so every stage starts from the same (cached) state; returns seconds."""
    started = time.perf_counter()
    with log.open("rb", buffering=0) as fh:
        while fh.read(1 << 24):
            pass
    return round(time.perf_counter() - started, 3)


def ensure_log(
    args: argparse.Namespace, out: Path, requests: int, gz: bool = False
) -> tuple[Path, dict[str, Any]]:
    if args.log:
        meta_file = generate_log.meta_path(args.log)
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        return args.log, meta
    path = out / generate_log.default_path(requests, gz, args.profile).name
    meta_file = generate_log.meta_path(path)
    if path.is_file() and meta_file.is_file() and not args.regenerate:
        meta = json.loads(meta_file.read_text())
        if (meta.get("lines"), meta.get("seed"), meta.get("profile", "default")) == (
            requests,
            args.seed,
            args.profile,
        ):
            print(f"reusing {path}")
            return path, meta
    print(f"generating {requests:,} {args.profile} requests -> {path}")
    return path, asdict(generate_log.generate(path, requests, args.seed, args.profile))


def reference(runs: list[Measured]) -> Measured:
    """One reference query's runs (before and after the stages) folded into their mean."""
    first = runs[0]
    first.note = f"mean of {len(runs)} runs: " + ", ".join(f"{m.seconds:.2f}s" for m in runs)
    first.seconds = round(sum(m.seconds for m in runs) / len(runs), 3)
    first.peak_rss_bytes = max(m.peak_rss_bytes for m in runs)
    return first


def _ratio(seconds: float, ref: Measured | None) -> float | None:
    if ref is None or ref.status != "ok" or ref.seconds <= 0:
        return None
    return round(seconds / ref.seconds, 3)


def derive(m: Measured, scan: Measured, groupby: Measured | None, requests: int) -> None:
    if m.status != "ok":
        return
    m.ratio = _ratio(m.seconds, scan)
    m.groupby_ratio = _ratio(m.seconds, groupby)
    if m.seconds > 0:
        m.requests_per_s = round(requests / m.seconds, 1)
        if "blocks" in m.counts:
            m.blocks_per_s = round(m.counts["blocks"] / m.seconds, 1)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def render_table(stages: list[Measured]) -> str:
    rows = [("stage", "seconds", "x groupby", "x scan", "peak RSS", "requests/s", "notes")]
    for m in stages:
        if m.status == "failed":
            rows.append(
                (m.stage, f">{m.seconds:.0f}", "-", "-", _gib(m.peak_rss_bytes), "-", m.note)
            )
            continue
        if m.status != "ok":
            rows.append((m.stage, "-", "-", "-", "-", "-", m.note))
            continue
        notes = ", ".join(f"{k} {v:.1f}s" for k, v in m.parts.items())
        if m.blocks_per_s is not None:
            notes = f"{m.blocks_per_s:,.0f} blocks/s" + (f", {notes}" if notes else "")
        rows.append((
            m.stage, f"{m.seconds:.1f}",
            f"{m.groupby_ratio:.2f}" if m.groupby_ratio is not None else "-",
            f"{m.ratio:.2f}" if m.ratio is not None else "-", _gib(m.peak_rss_bytes),
            f"{m.requests_per_s:,.0f}" if m.requests_per_s is not None else "-", notes,
        ))  # fmt: skip
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for r in rows:
        cells = [
            c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))
        ]
        lines.append("  ".join([*cells, r[-1]]))
    return "\n".join(lines)


def machine() -> dict[str, Any]:
    import duckdb

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return {
        "cpus": os.cpu_count(),
        "memory_bytes": mem,
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "platform": platform.platform(),
    }


def code_version() -> dict[str, Any]:
    """The commit measured, and which advisor files differ from it (read-only git calls)."""
    env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0"}

    def git(*args: str) -> str:
        try:
            done = subprocess.run(["git", *args], cwd=HERE.parent, env=env, capture_output=True,
                                  text=True, timeout=30)  # fmt: skip
        except (OSError, subprocess.TimeoutExpired):
            return ""
        return done.stdout.strip() if done.returncode == 0 else ""

    changed = git("diff", "--name-only", "HEAD", "--", "advisor", "rules")
    untracked = git("ls-files", "--others", "--exclude-standard", "--", "advisor", "rules")
    return {
        "commit": git("rev-parse", "--short", "HEAD") or None,
        "modified": [*changed.splitlines(), *untracked.splitlines()],
    }


def stage_order(wanted: list[str]) -> list[str]:
    """The stages to run, in an order where each finds the store the previous one wrote."""
    shared = [s for s in wanted if s not in OWN_STORE]
    levers = [s for s in shared if s not in ("ingest", "baseline")]
    order = ["ingest", *(["baseline"] if levers or "baseline" in wanted else []), *levers]
    return (order if shared else []) + [s for s in OWN_STORE if s in wanted]


def run_stages(
    order: list[str], out: Path, log: Path, limits: Limits, repeats: int, cprofile: bool
) -> tuple[list[Measured], list[Measured]]:
    """The reference queries, the stages, the reference queries again: (references, stages)."""
    db = out / "bench.duckdb"
    runs: dict[str, list[Measured]] = {
        ref: [run_stage(ref, out, log, db, limits, cprofile)] for ref in REFERENCES
    }
    measured: list[Measured] = []
    failed = ""  # ingest -> baseline -> levers: each reads the store the previous one wrote
    for stage in order:
        if failed and stage not in OWN_STORE:
            measured.append(Measured(stage, "skipped", 0.0, note=f"{failed} failed"))
            continue
        measured.append(run_stage(stage, out, log, db, limits, cprofile))
        if measured[-1].status == "failed" and stage in ("ingest", "baseline"):
            failed = stage
    for _ in range(1, repeats):
        for ref in REFERENCES:
            runs[ref].append(run_stage(ref, out, log, db, limits, cprofile))
    return [reference(runs[ref]) for ref in REFERENCES], measured


def targets_of(by_stage: dict[str, Measured]) -> dict[str, Any]:
    """Issue 16's bar: the main job within 3x the notebook's GROUP BY, in at most 2 GiB."""
    targets: dict[str, Any] = {"ratio_target": TARGET_RATIO, "rss_target_bytes": TARGET_RSS}
    analyze = by_stage.get("analyze")
    if analyze is None:
        return targets
    if analyze.status != "ok" or analyze.groupby_ratio is None:
        return {**targets, "within_ratio_target": False, "within_rss_target": False}
    return {
        **targets,
        "analyze_seconds": analyze.seconds,
        "analyze_groupby_ratio": analyze.groupby_ratio,
        "analyze_peak_rss_bytes": analyze.peak_rss_bytes,
        "within_ratio_target": analyze.groupby_ratio <= TARGET_RATIO,
        "within_rss_target": analyze.peak_rss_bytes <= TARGET_RSS,
    }


def measure(
    args: argparse.Namespace, order: list[str], out: Path, log: Path, meta: dict[str, Any]
) -> tuple[dict[str, Any], list[Measured]]:
    """Every reference and stage on one log: (its results.json part, the rows to print)."""
    read_s = warm_page_cache(log)
    limits = Limits(int(args.rss_limit_gib * (1 << 30)), args.stage_timeout)
    (scan, groupby), measured = run_stages(order, out, log, limits, args.scan_repeats,
                                           args.cprofile)  # fmt: skip

    # requests stored (by ingest, else by analyze's own ingest); the scan's rows if neither ran
    stored = [m for m in measured if m.status == "ok" and "requests" in m.counts]
    requests = int(stored[0].counts["requests"]) if stored else int(scan.counts.get("rows", 0))
    ingest = next((m for m in measured if m.stage == "ingest"), None)
    warnings = []
    if ingest is not None and ingest.status == "ok":
        expected = meta.get("requests")  # valid lines the generator wrote
        if expected and abs(requests - expected) > 0.01 * expected:
            warnings.append(
                f"ingest stored {requests:,} requests but the log holds {expected:,} valid ones "
                f"({ingest.counts.get('quarantined', 0):,} quarantined): figures are not comparable"
            )
    rows = [scan, groupby, *measured]
    for m in rows:
        derive(m, scan, groupby, requests)
    size = log.stat().st_size
    results = {
        "log": {"path": str(log), "bytes": size, "read_seconds": read_s, **meta},
        "requests": requests,
        "scan_sql": " ".join(stages.scan_sql(log).split()),
        "groupby_sql": " ".join(stages.groupby_sql(log).split()),
        "stages": {m.stage: asdict(m) for m in rows},
        "targets": targets_of({m.stage: m for m in rows}),
        "warnings": warnings,
    }
    return results, rows


def print_targets(targets: dict[str, Any]) -> None:
    if "analyze_groupby_ratio" in targets:
        print(
            f"\nanalyze: {targets['analyze_groupby_ratio']:.2f}x the GROUP BY "
            f"(target <= {TARGET_RATIO:.0f}x), peak RSS "
            f"{_gib(targets['analyze_peak_rss_bytes'])} (target <= {_gib(TARGET_RSS)})"
        )


def run_sizes(
    args: argparse.Namespace, sizes: list[int], out: Path, order: list[str]
) -> dict[str, Any]:
    """Memory flatness: the same stages at each size (each in its own folder), analyze's peak RSS
    and seconds per size side by side. Logs of --gzip-from requests and more are .jsonl.gz."""
    per_size = []
    for n in sizes:
        log, meta = ensure_log(args, out, n, gz=n >= args.gzip_from)
        work = out / f"size-{n}"
        work.mkdir(parents=True, exist_ok=True)
        results, rows = measure(args, order, work, log, meta)
        print(f"\n{log.name}: {results['requests']:,} requests, {log.stat().st_size / 1e9:.2f} GB")
        print(render_table(rows))
        analyze = results["stages"].get("analyze", {})
        per_size.append({
            "requests": n, "log": str(log), "log_bytes": results["log"]["bytes"],
            "analyze_status": analyze.get("status"), "analyze_seconds": analyze.get("seconds"),
            "analyze_peak_rss_bytes": analyze.get("peak_rss_bytes"),
            "analyze_groupby_ratio": analyze.get("groupby_ratio"),
            "seconds_per_million": round(analyze["seconds"] / n * 1e6, 3)
            if analyze.get("status") == "ok" else None,
            "results": results,
        })  # fmt: skip
    ok = [s for s in per_size if s["analyze_status"] == "ok"]
    flat: dict[str, Any] = {}
    if ok:
        peaks = [s["analyze_peak_rss_bytes"] for s in ok]
        rates = [s["seconds_per_million"] for s in ok]
        flat = {
            "peak_rss_spread": round(max(peaks) / min(peaks) - 1, 4),  # issue 16: within 10 %
            "seconds_per_million_spread": round(max(rates) / min(rates) - 1, 4),  # linear time
        }
    print("\nsize        log GB  analyze s  s per 1M  x groupby  peak RSS")
    for s in per_size:
        secs = s["analyze_seconds"]
        ratio = s["analyze_groupby_ratio"]
        print(
            f"{s['requests']:>10,}  {s['log_bytes'] / 1e9:6.2f}  "
            f"{secs if secs is not None else '-':>9}  {s['seconds_per_million'] or '-':>8}  "
            f"{ratio if ratio is not None else '-':>9}  {_gib(s['analyze_peak_rss_bytes'] or 0)}"
        )
    return {"sizes": per_size, "flatness": flat}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="size of generated log")
    parser.add_argument(
        "--profile", choices=generate_log.PROFILES, default="default", help="traffic shape"
    )
    parser.add_argument("--log", type=Path, help="benchmark this log instead of a generated one")
    parser.add_argument(
        "--stages",
        help=f"comma list: ingest, baseline, then advisor.levers modules (default {DEFAULT_STAGES};"
        " with --sizes, analyze)",
    )
    parser.add_argument(
        "--sizes",
        help="memory flatness: comma list of request counts, each generated and measured "
        "(from --gzip-from as .jsonl.gz); default stages: analyze",
    )
    parser.add_argument("--gzip-from", type=int, default=GZIP_FROM, help="see --sizes")
    parser.add_argument("--out", type=Path, default=generate_log.OUT_DIR, help="work folder")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true", help="rewrite the generated log")
    parser.add_argument(
        "--scan-repeats", type=int, default=2, help="runs of the scan and GROUP BY (before/after)"
    )
    parser.add_argument("--cprofile", action="store_true", help="cProfile each stage into --out")
    parser.add_argument(
        "--rss-limit-gib",
        type=float,
        default=16.0,
        help="kill a stage whose RSS exceeds this (shared machine guard)",
    )
    parser.add_argument("--stage-timeout", type=float, default=3600.0, help="seconds per stage")
    args = parser.parse_args(argv)

    stages_arg = args.stages or ("analyze" if args.sizes else DEFAULT_STAGES)
    wanted = [s.strip() for s in stages_arg.split(",") if s.strip()]
    bad = [s for s in wanted if not s.isidentifier()]
    if bad:
        parser.error(f"not a stage name: {bad}; stages: {STAGES} or any advisor.levers module")
    sizes = [int(n) for n in args.sizes.split(",") if n.strip()] if args.sizes else []
    if args.sizes and (args.log or not sizes or min(sizes) <= 0):
        parser.error("--sizes takes positive request counts, and no --log")
    order = stage_order(wanted)

    if TIKTOKEN_CACHE.is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    code = code_version()  # at the start: the tree may change while a long run goes on
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    head = {
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "code": code,
        "profile": args.profile,
    }
    if sizes:
        results = {**head, **run_sizes(args, sizes, out, order)}
    else:
        log, meta = ensure_log(args, out, args.requests)
        part, rows = measure(args, order, out, log, meta)
        results = {**head, **part}
        print(
            f"\n{log.name}: {part['requests']:,} requests, {part['log']['bytes'] / 1e9:.2f} GB; "
            "ratios to the notebook's GROUP BY and to the bare scan"
        )
        print(render_table(rows))
        print_targets(part["targets"])
        for warning in part["warnings"]:
            print(f"WARNING: {warning}")
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
