"""Reading a log's time, and refusing an implausible one: SQL shared by every format."""

from __future__ import annotations

from advisor import plausibility

# Times are read between these instants: a clock that far off is not telling the time, and
# Python, which the report and the exports use, holds no datetime beyond year 9999.
_FIRST = "1900-01-01 00:00:00+00"
_END = "10000-01-01 00:00:00+00"
_FIRST_SECOND = -2_208_988_800  # _FIRST as epoch seconds
_END_SECOND = 253_402_300_800  # _END as epoch seconds
_MILLIS_FROM = 1e11  # a larger epoch is in milliseconds (1e11 seconds is beyond year 5000)


def timestamp_sql(raw: str) -> str:
    """The UTC TIMESTAMP in `raw`: epoch seconds, epoch milliseconds, or any text DuckDB reads
    as a time (ISO 8601 with or without an offset); NULL for anything else, NaN and infinities
    included, and for a time outside the years 1900-9999. Never raises."""
    number = f"TRY_CAST({raw} AS DOUBLE)"
    seconds = f"(CASE WHEN abs({number}) > {_MILLIS_FROM} THEN {number} / 1000 ELSE {number} END)"
    text = f"TRY_CAST({raw} AS TIMESTAMPTZ)"
    return f"""(CASE
        WHEN {number} IS NOT NULL THEN
          CASE WHEN {seconds} >= {_FIRST_SECOND} AND {seconds} < {_END_SECOND}
               THEN to_timestamp({seconds}) AT TIME ZONE 'UTC' END
        WHEN {text} >= TIMESTAMPTZ '{_FIRST}' AND {text} < TIMESTAMPTZ '{_END}'
          THEN {text} AT TIME ZONE 'UTC'
      END)"""


def implausible_sql(raw: str, field: str) -> str:
    """CASE arms quarantining a time outside the plausibility limits (rules/plausibility.yaml),
    over `ts` (timestamp_sql of `raw`); `field` is the SQL string naming the field. An epoch
    number is quoted with the UTC time it reads as."""
    shown = (
        f"left({raw}, 40) || CASE WHEN TRY_CAST({raw} AS DOUBLE) IS NOT NULL "
        f"THEN ' (' || strftime(ts, '%Y-%m-%dT%H:%M:%SZ') || ')' ELSE '' END"
    )
    return plausibility.when_sql("year", "year(ts)", field, shown)
