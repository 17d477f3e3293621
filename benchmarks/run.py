"""Scale benchmark: advisor's stages on one generated log, as ratios to a bare DuckDB scan.

    python benchmarks/run.py                                   # 1,000,000 requests
    python benchmarks/run.py --requests 200000 --stages ingest,baseline
    python benchmarks/run.py --log my-logs.jsonl

The machine is shared and noisy, so absolute seconds mean little: every stage is reported as a
ratio to the bare scan of the same file measured in the same run (before the stages and again
after them; the ratio uses their mean). Each stage runs in its own process (benchmarks/stages.py)
so that its peak RSS is its own. Writes `results.json` into `--out` (default benchmarks/out/).
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
TARGET_RATIO = 4.0  # issue target: ingest + baseline within 4x the bare scan
TARGET_RSS = 4 << 30  # and peak RSS under 4 GiB
TIKTOKEN_CACHE = HERE.parent.parent / "shared" / "tiktoken-cache"  # ../shared beside the repo


@dataclass
class Measured:
    """One stage as the parent saw it: the child's report plus its process-level figures."""

    stage: str
    status: str
    seconds: float
    ratio: float | None = None
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
    stage: str, out: Path, log: Path, db: Path, limits: Limits, profile: bool = False
) -> Measured:
    """Run one stage in a child process; its peak RSS comes from wait4 on that child alone."""
    result = out / f"stage-{stage}.json"
    result.unlink(missing_ok=True)
    cmd = [sys.executable, str(HERE / "stages.py"), stage, "--log", str(log), "--db", str(db),
           "--result", str(result)]  # fmt: skip
    if profile:
        cmd += ["--profile", str(out / f"profile-{stage}.prof")]
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


def ensure_log(args: argparse.Namespace, out: Path) -> tuple[Path, dict[str, Any]]:
    if args.log:
        meta_file = generate_log.meta_path(args.log)
        meta = json.loads(meta_file.read_text()) if meta_file.is_file() else {}
        return args.log, meta
    path = out / f"log-{args.requests}.jsonl"
    meta_file = generate_log.meta_path(path)
    if path.is_file() and meta_file.is_file() and not args.regenerate:
        meta = json.loads(meta_file.read_text())
        if meta.get("lines") == args.requests and meta.get("seed") == args.seed:
            print(f"reusing {path}")
            return path, meta
    print(f"generating {args.requests:,} requests -> {path}")
    return path, asdict(generate_log.generate(path, args.requests, args.seed))


def derive(m: Measured, scan_s: float, requests: int) -> None:
    if m.status != "ok":
        return
    m.ratio = round(m.seconds / scan_s, 3) if scan_s > 0 else None
    if m.seconds > 0:
        m.requests_per_s = round(requests / m.seconds, 1)
        if "blocks" in m.counts:
            m.blocks_per_s = round(m.counts["blocks"] / m.seconds, 1)


def _gib(n: int) -> str:
    return f"{n / (1 << 30):.2f} GiB" if n >= 1 << 30 else f"{n / (1 << 20):.0f} MiB"


def render_table(stages: list[Measured]) -> str:
    rows = [("stage", "seconds", "x scan", "peak RSS", "requests/s", "notes")]
    for m in stages:
        if m.status == "failed":
            rows.append((m.stage, f">{m.seconds:.0f}", "-", _gib(m.peak_rss_bytes), "-", m.note))
            continue
        if m.status != "ok":
            rows.append((m.stage, "-", "-", "-", "-", m.note))
            continue
        notes = ", ".join(f"{k} {v:.1f}s" for k, v in m.parts.items())
        if m.blocks_per_s is not None:
            notes = f"{m.blocks_per_s:,.0f} blocks/s" + (f", {notes}" if notes else "")
        rows.append((
            m.stage, f"{m.seconds:.1f}", f"{m.ratio:.2f}" if m.ratio is not None else "-",
            _gib(m.peak_rss_bytes),
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=1_000_000, help="size of generated log")
    parser.add_argument("--log", type=Path, help="benchmark this log instead of a generated one")
    parser.add_argument(
        "--stages",
        default=DEFAULT_STAGES,
        help="comma list: ingest, baseline, then advisor.levers modules",
    )
    parser.add_argument("--out", type=Path, default=generate_log.OUT_DIR, help="work folder")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--regenerate", action="store_true", help="rewrite the generated log")
    parser.add_argument("--scan-repeats", type=int, default=2, help="bare scans (before/after)")
    parser.add_argument("--profile", action="store_true", help="cProfile each stage into --out")
    parser.add_argument(
        "--rss-limit-gib",
        type=float,
        default=16.0,
        help="kill a stage whose RSS exceeds this (shared machine guard)",
    )
    parser.add_argument("--stage-timeout", type=float, default=3600.0, help="seconds per stage")
    args = parser.parse_args(argv)

    wanted = [s.strip() for s in args.stages.split(",") if s.strip()]
    bad = [s for s in wanted if not s.isidentifier()]
    if bad:
        parser.error(f"not a stage name: {bad}; stages: {STAGES} or any advisor.levers module")
    shared = [s for s in wanted if s not in OWN_STORE]
    levers = [s for s in shared if s not in ("ingest", "baseline")]
    # A later stage reads the store an earlier one wrote: ingest -> baseline -> levers.
    order = ["ingest", *(["baseline"] if levers or "baseline" in wanted else []), *levers]
    order = (order if shared else []) + [s for s in OWN_STORE if s in wanted]

    if TIKTOKEN_CACHE.is_dir():
        os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
    code = code_version()  # at the start: the tree may change while a long run goes on
    out = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    log, meta = ensure_log(args, out)
    db = out / "bench.duckdb"
    read_s = warm_page_cache(log)

    limits = Limits(int(args.rss_limit_gib * (1 << 30)), args.stage_timeout)
    scans = [run_stage("scan", out, log, db, limits, args.profile)]
    measured: list[Measured] = []
    failed = ""  # ingest -> baseline -> levers: each reads the store the previous one wrote
    for stage in order:
        if failed and stage not in OWN_STORE:
            measured.append(Measured(stage, "skipped", 0.0, note=f"{failed} failed"))
            continue
        measured.append(run_stage(stage, out, log, db, limits, args.profile))
        if measured[-1].status == "failed" and stage in ("ingest", "baseline"):
            failed = stage
    for _ in range(1, args.scan_repeats):
        scans.append(run_stage("scan", out, log, db, limits, args.profile))
    scan = scans[0]
    scan.note = f"mean of {len(scans)} runs: " + ", ".join(f"{s.seconds:.2f}s" for s in scans)
    scan.seconds = round(sum(s.seconds for s in scans) / len(scans), 3)
    scan.peak_rss_bytes = max(s.peak_rss_bytes for s in scans)

    # requests stored (by ingest, else by analyze's own ingest); the scan's rows if neither ran
    stored = [m for m in measured if m.status == "ok" and "requests" in m.counts]
    requests = int(stored[0].counts["requests"]) if stored else int(scan.counts["rows"])
    ingest = next((m for m in measured if m.stage == "ingest"), None)
    warnings = []
    if ingest is not None and ingest.status == "ok":
        expected = meta.get("requests")  # valid lines the generator wrote
        if expected and abs(requests - expected) > 0.01 * expected:
            warnings.append(
                f"ingest stored {requests:,} requests but the log holds {expected:,} valid ones "
                f"({ingest.counts.get('quarantined', 0):,} quarantined): figures are not comparable"
            )
    for m in [scan, *measured]:
        derive(m, scan.seconds, requests)

    by_stage = {m.stage: m for m in [scan, *measured]}
    targets: dict[str, Any] = {"ratio_target": TARGET_RATIO, "rss_target_bytes": TARGET_RSS}
    ok = {name for name, m in by_stage.items() if m.status == "ok"}
    if {"ingest", "baseline"} <= set(by_stage) and not {"ingest", "baseline"} <= ok:
        targets.update(within_ratio_target=False, within_rss_target=False)
    elif "ingest" in by_stage and "baseline" in by_stage:
        both = by_stage["ingest"].seconds + by_stage["baseline"].seconds
        peak = max(by_stage["ingest"].peak_rss_bytes, by_stage["baseline"].peak_rss_bytes)
        targets.update(
            ingest_plus_baseline_seconds=round(both, 3),
            ingest_plus_baseline_ratio=round(both / scan.seconds, 3),
            ingest_plus_baseline_peak_rss_bytes=peak,
            within_ratio_target=both / scan.seconds <= TARGET_RATIO,
            within_rss_target=peak < TARGET_RSS,
        )
    size = log.stat().st_size
    results = {
        "generated_at": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "command": " ".join([Path(sys.argv[0]).name, *(sys.argv[1:] if argv is None else argv)]),
        "machine": machine(),
        "code": code,
        "log": {"path": str(log), "bytes": size, "read_seconds": read_s, **meta},
        "requests": requests,
        "scan_sql": " ".join(stages.scan_sql(log).split()),
        "stages": {m.stage: asdict(m) for m in [scan, *measured]},
        "targets": targets,
        "warnings": warnings,
    }
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")

    print(f"\n{log.name}: {requests:,} requests, {size / 1e9:.2f} GB; ratios to the bare scan")
    print(render_table([scan, *measured]))
    if "ingest_plus_baseline_ratio" in targets:
        print(
            f"\ningest + baseline: {targets['ingest_plus_baseline_ratio']:.2f}x the bare scan "
            f"(target <= {TARGET_RATIO:.0f}x), peak RSS "
            f"{_gib(targets['ingest_plus_baseline_peak_rss_bytes'])} (target < 4 GiB)"
        )
    for warning in warnings:
        print(f"WARNING: {warning}")
    print(f"results: {out / 'results.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
