"""The baseline: resolve models to prices, price every request exactly, and roll it up.

Per-request costs live in the `costs` table (request_id, baseline_cost); NULL means unpriced, and
every roll-up counts those rows instead of treating them as free.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from advisor import analysis as A
from advisor.ingest import IngestReport
from advisor.money import maybe_money, money
from advisor.pricing import PriceTable, Resolution, cost_sql, register_prices
from advisor.store import first_row, quarantine_reasons, scalar

TOP_USERS = 25
# Spend per model groups by what pricing resolved a name to (an alias, a dated snapshot, a mapped
# deployment is that model); an unresolved name stays its own row.
_MODEL = "coalesce(r.model_key, r.model)"


def resolve_models(
    con: duckdb.DuckDBPyConnection, prices: PriceTable, deployments: Mapping[str, str]
) -> None:
    """Set model_key / model_resolution (and a missing provider) on every request.

    A name that resolves to no price (an Azure deployment, say) takes the model its responses
    most often name, for all its rows, failed ones included: resolution is "deployment".
    """
    pairs = con.execute(
        """WITH named AS (
             SELECT model, provider, response_model, count(*) AS n FROM requests
             GROUP BY ALL)
           SELECT model, provider,
                  arg_max(response_model, (n, response_model)) FILTER
                    (WHERE response_model IS NOT NULL)
           FROM named GROUP BY model, provider ORDER BY model, provider NULLS FIRST"""
    ).fetchall()
    resolved = prices.resolve_many([(m, p) for m, p, _ in pairs], deployments)
    rows: dict[str, list[Any]] = {"model": [], "provider": [], "key": [], "how": [], "kp": []}
    for model, provider, response_model in pairs:
        hit = resolved[(model, provider)]
        if hit is None and response_model:
            real = prices.resolve(response_model, provider)
            hit = Resolution(real.key, "deployment") if real else None
        rows["model"].append(model)
        rows["provider"].append(provider)
        rows["key"].append(hit.key if hit else None)
        rows["how"].append(hit.how if hit else None)
        rows["kp"].append(prices.models[hit.key].provider if hit else None)
    con.register("_resolved", pa.table(rows))
    con.execute(
        """UPDATE requests r SET model_key = m.key, model_resolution = m.how,
                  provider = coalesce(r.provider, m.kp)
           FROM _resolved m
           WHERE r.model = m.model AND r.provider IS NOT DISTINCT FROM m.provider"""
    )
    con.unregister("_resolved")


def price_requests(con: duckdb.DuckDBPyConnection, prices: PriceTable) -> None:
    """Register the price table and write `costs` (request_id, baseline_cost)."""
    register_prices(con, prices)
    con.execute(
        f"""CREATE OR REPLACE TABLE costs AS
            SELECT r.request_id, {cost_sql("r", "p")} AS baseline_cost
            FROM requests r LEFT JOIN prices p ON p.model_key = r.model_key"""
    )


def _rollup(
    con: duckdb.DuckDBPyConnection,
    key_sql: str,
    total: Decimal | None,
    limit: int | None = None,
    by_model: bool = False,
) -> list[A.CostRow]:
    """Cost rows grouped by `key_sql` (and by model_key too when `by_model`), costliest first.

    `via`: the logged model names of a row that differ from its key (filled when the key is the
    model, see `_MODEL`)."""
    limit_sql = f"LIMIT {limit}" if limit else ""
    model = "r.model_key" if by_model else "NULL"
    via = "NULL"
    if key_sql == _MODEL:
        via = f"list_sort(list(DISTINCT r.model) FILTER (WHERE r.model <> {_MODEL}))"
    rows = con.execute(
        f"""SELECT {key_sql} AS k, count(*), sum(r.input_tokens), sum(r.cache_read_tokens),
                   sum(r.output_tokens), sum(c.baseline_cost),
                   count(*) FILTER (WHERE c.baseline_cost IS NULL), {model} AS mk,
                   {via} AS via
            FROM requests r JOIN costs c USING (request_id)
            GROUP BY k, mk
            ORDER BY sum(c.baseline_cost) DESC NULLS LAST, k NULLS LAST, mk NULLS LAST
            {limit_sql}"""
    ).fetchall()
    out = []
    for k, n, inp, cached, outp, cost, unpriced, model_key, names in rows:
        cost = maybe_money(cost)  # every request of the group unpriced: unknown, not 0
        out.append(
            A.CostRow(
                key=None if k is None else str(k),
                requests=n,
                input_tokens=int(inp or 0),
                cache_read_tokens=int(cached or 0),
                output_tokens=int(outp or 0),
                cost=cost,
                share=float(cost / total) if cost is not None and total else 0.0,
                unpriced_requests=unpriced,
                model_key=model_key,
                via=names or [],
            )
        )
    return out


def _reconciliation(con: duckdb.DuckDBPyConnection) -> A.Reconciliation:
    rows = con.execute(
        """SELECT r.model_key, count(*), sum(r.logged_cost), sum(c.baseline_cost)
           FROM requests r JOIN costs c USING (request_id)
           WHERE r.logged_cost IS NOT NULL AND c.baseline_cost IS NOT NULL
             AND r.token_source = 'logged'
           GROUP BY r.model_key ORDER BY r.model_key"""
    ).fetchall()
    # rows with both figures only (WHERE above): a sum over none is 0, nothing is unknown
    logged = sum((money(row[2]) for row in rows), Decimal(0))
    computed = sum((money(row[3]) for row in rows), Decimal(0))
    by_model = []
    for key, n, lg, cp in rows:
        lg, cp = money(lg), money(cp)
        by_model.append(
            A.ReconciliationRow(
                model_key=key, requests=n, logged=lg, computed=cp, gap=lg - cp,
                gap_share=float((lg - cp) / cp) if cp else None,
            )
        )  # fmt: skip
    return A.Reconciliation(
        rows_with_logged_cost=sum(row[1] for row in rows),
        logged_total=logged,
        computed_total=computed,
        gap=logged - computed,
        gap_share=float((logged - computed) / computed) if computed else None,
        by_model=by_model,
    )


def build_baseline(con: duckdb.DuckDBPyConnection) -> A.Baseline:
    total = maybe_money(scalar(con, "SELECT sum(baseline_cost) FROM costs"))
    day = "CAST(r.ts AS DATE)"  # str() of a DATE is YYYY-MM-DD; cheaper to group than a string
    return A.Baseline(
        cost=total,
        by_model=_rollup(con, _MODEL, total, by_model=True),
        by_feature=_rollup(con, "r.feature", total),
        by_user=_rollup(con, "r.user_id", total, limit=TOP_USERS),
        by_day=sorted(_rollup(con, day, total), key=lambda row: row.key or ""),
        by_day_model=sorted(
            _rollup(con, day, total, by_model=True),
            key=lambda row: (row.key or "", row.model_key or ""),
        ),
        reconciliation=_reconciliation(con),
    )


def build_coverage(
    con: duckdb.DuckDBPyConnection,
    report: IngestReport,
    calibration: float | None,
    tokenizer: str,
    notes: list[str],
) -> A.Coverage:
    def count(sql: str) -> int:
        return int(scalar(con, sql) or 0)

    requests = count("SELECT count(*) FROM requests")
    unpriced = [
        A.UnpricedModel(
            model=m, provider=p, requests=n, input_tokens=int(i or 0), output_tokens=int(o or 0)
        )
        for m, p, n, i, o in con.execute(
            """SELECT model, provider, count(*), sum(input_tokens), sum(output_tokens)
               FROM requests WHERE model_key IS NULL GROUP BY model, provider
               ORDER BY count(*) DESC, model, provider"""
        ).fetchall()
    ]
    sources = dict(
        con.execute("SELECT token_source, count(*) FROM requests GROUP BY token_source").fetchall()
    )
    resolution = {
        str(how or "unpriced"): n
        for how, n in con.execute(
            "SELECT model_resolution, count(*) FROM requests GROUP BY 1 ORDER BY 1 NULLS LAST"
        ).fetchall()
    }
    reasons = [
        # The file's name, as in `inputs`: an analysis does not depend on where logs were kept.
        A.QuarantineReason(file=Path(f).name, field=fd, reason=r, rows=n, first_line=line)
        for f, fd, r, n, line in quarantine_reasons(con)
    ]
    return A.Coverage(
        requests=requests,
        priced_requests=count("SELECT count(*) FROM requests WHERE model_key IS NOT NULL"),
        unpriced_requests=count("SELECT count(*) FROM requests WHERE model_key IS NULL"),
        quarantined_rows=count("SELECT count(*) FROM quarantine"),
        duplicate_rows=report.totals.duplicates,
        error_requests=count("SELECT count(*) FROM requests WHERE status = 'error'"),
        unpriced_models=unpriced,
        token_source=A.TokenSources(**{k: v for k, v in sources.items() if k}),
        token_calibration=calibration,
        tokenizer=tokenizer,
        model_resolution=resolution,
        quarantine_reasons=reasons,
        notes=notes,
    )


def build_period(con: duckdb.DuckDBPyConnection) -> A.Period:
    start, end = first_row(con, "SELECT min(ts), max(ts) FROM requests") or (None, None)
    if start is None:
        return A.Period(start=None, end=None, days=0.0)
    days = (end - start).total_seconds() / 86400
    return A.Period(start=start.isoformat() + "Z", end=end.isoformat() + "Z", days=round(days, 4))


def priced_by_source(con: duckdb.DuckDBPyConnection, table: PriceTable) -> dict[str, int]:
    """Priced requests by the source of their model's prices (a price file or the snapshot)."""
    counts: dict[str, int] = {}
    for key, n in con.execute(
        "SELECT model_key, count(*) FROM requests WHERE model_key IS NOT NULL GROUP BY 1"
    ).fetchall():
        if (source := table.origin.get(key)) is not None:
            counts[source] = counts.get(source, 0) + n
    return counts


def source_note(con: duckdb.DuckDBPyConnection, table: PriceTable) -> list[str]:
    """The coverage note naming how many requests each kind of source priced, once any request
    falls back to the community snapshot (curated alone is the expected case, not news)."""
    by_source = priced_by_source(con, table)
    labels: dict[str, int] = {}
    for s in table.sources:
        if by_source.get(s.name):
            labels[s.label] = labels.get(s.label, 0) + by_source[s.name]
    if not any(s.kind == "community" and by_source.get(s.name) for s in table.sources):
        return []
    return ["requests priced by " + ", ".join(f"{k} {n:,}" for k, n in labels.items())]


def price_gaps(con: duckdb.DuckDBPyConnection, table: PriceTable) -> list[str]:
    """Coverage notes: priced requests whose tokens need a price their model's entry lacks.

    Such tokens are billed by `rates()`'s fallbacks (cache reads at the input price, a tier
    without prices at standard prices), as a provider without that price would bill them; the
    note says how many requests that touches, so an incomplete (e.g. imported) table is never
    silently dearer or cheaper than the traffic's real bill."""
    rows = con.execute(
        """SELECT model_key,
                  count(*) FILTER (WHERE cache_read_tokens > 0),
                  count(*) FILTER (WHERE cache_write_tokens > coalesce(cache_write_1h_tokens, 0)),
                  count(*) FILTER (WHERE cache_write_1h_tokens > 0),
                  count(*) FILTER (WHERE service_tier = 'batch'),
                  count(*) FILTER (WHERE service_tier = 'flex'),
                  count(*) FILTER (WHERE service_tier = 'priority'),
                  count(*)
           FROM requests WHERE model_key IS NOT NULL GROUP BY model_key ORDER BY model_key"""
    ).fetchall()
    gaps: dict[str, tuple[int, list[str]]] = {}

    def gap(what: str, key: str, requests: int) -> None:
        n, keys = gaps.setdefault(what, (0, []))
        gaps[what] = (n + requests, [*keys, key])

    for key, reads, writes, writes_1h, batch, flex, priority, total in rows:
        model = table.models.get(key)
        if model is None:
            continue
        p, rules = model.prices, table.caching_for(key)
        surcharge = rules is None or rules.write_surcharge  # OpenAI writes cost the input price
        at_input, at_std = ": billed at the input price", ": billed at standard prices"
        checks = (
            (p.cached_input is None, reads,
             f"logged cache reads with no cache-read price{at_input}"),
            (p.cache_write_5m is None and surcharge, writes,
             f"logged cache writes with no cache-write price{at_input}"),
            (p.cache_write_1h is None and surcharge, writes_1h,
             "logged 1-hour cache writes with no 1-hour price: billed at the 5-minute write price"),
            (p.batch_input is None, batch, f"ran as batch with no batch price{at_std}"),
            (p.flex_input is None and p.batch_input is None, flex,
             f"ran as flex with no flex or batch price{at_std}"),
            (p.priority_input is None, priority, f"ran as priority with no priority price{at_std}"),
            (bool(model.unmodelled), total, "ran on models listing prices advisor cannot bill as"
             " listed (`advisor prices show MODEL` names them): billed without them"),
        )  # fmt: skip
        for missing, requests, what in checks:
            if missing and requests:
                gap(what, key, requests)
    return [
        f"{n:,} requests {what} ({', '.join(keys[:5])}{', ...' if len(keys) > 5 else ''})"
        for what, (n, keys) in gaps.items()
    ]


def build_prices(con: duckdb.DuckDBPyConnection, table: PriceTable) -> A.PriceTableIdentity:
    """The price table's identity: its files, their retrieval dates, its digest, and a digest per
    model the requests were priced on (so a diff can name the models whose prices changed)."""
    keys = [k for (k,) in con.execute(
        "SELECT DISTINCT model_key FROM requests WHERE model_key IS NOT NULL ORDER BY 1"
    ).fetchall() if k in table.models]  # fmt: skip
    by_source = priced_by_source(con, table)
    return A.PriceTableIdentity(
        sources=[
            A.PriceSource(
                name=s.name,
                kind=s.kind,
                retrieved=s.retrieved.isoformat(),
                models=s.models,
                requests=by_source.get(s.name, 0),
            )
            for s in table.sources
        ],
        digest=table.digest(),
        models={key: table.model_digest(key) for key in keys},
    )
