"""The difficulty classifier: scikit-learn logistic regression on the user's own traffic.

Trained on the weak labels of the heuristics (rules/difficulty.yaml: cues, output length, feedback,
errors, templates already served by a cheaper tier) but fed only request-time features, so a
router can run it before the call. Features are binary (task cues, size bins, flags, the template
id, word tokens of the system prompt and last user message); probabilities are calibrated by
temperature scaling on a held-out fifth. Everything is seeded: the same store gives the same model.

The model is exported as plain JSON (routing.CLASSIFIER_FORMAT) and scored here with numpy in the
exact arithmetic order of the pure-Python `routing.Classifier`, so both give the same decisions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from scipy import sparse
from scipy.optimize import minimize_scalar

from advisor.difficulty.features import active_names_sql, token_names_sql
from advisor.routing import CLASSES, CLASSIFIER_FORMAT, MICRO

SAMPLE_SIZE = 100_000  # training rows at most: enough for a linear model, bounded time at 1M+
CHUNK_ROWS = 200_000  # rows scored per pass: bounds memory whatever the size of the log
MIN_DF = 5  # a token must appear in this many training requests
MAX_VOCAB = 4000
MIN_TEMPLATE_ROWS = 10
C = 0.1  # strong L2: many near-duplicate binary features, and labels that are only heuristics
MISSING_CLASS_LOGIT = -1e4  # a class absent from the weak labels: probability exp(-1e4) = 0
_HELDOUT_EVERY = 5


@dataclass
class TrainingReport:
    seed: int
    labelled_rows: int
    trained_on: int
    heldout: int
    heldout_agreement: float | None  # share of held-out weak labels the model reproduces
    temperature: float
    classes_present: list[str]
    features: int
    vocabulary: int
    templates: int
    fallback: str | None = None  # why a prior-only model was used, if it was


def _names_sql(rows: str, vocab: str | None) -> str:
    return (
        f"SELECT rn, name FROM ({active_names_sql(rows)}) "
        f"UNION ALL SELECT rn, name FROM ({token_names_sql(rows, vocab)})"
    )


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    con.execute("SELECT 1").fetchall()  # settle any half-read result: con.sql() refuses otherwise
    return con.sql(sql).to_arrow_table()


def _csr(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    data = np.ones(len(rows), dtype=np.float64)
    x = sparse.csr_matrix((data, (rows, cols)), shape=(n_rows, n_cols))
    x.sum_duplicates()
    x.sort_indices()  # column order within a row = the runtime's summation order
    x.data[:] = 1.0
    return x


def _select_features(con: duckdb.DuckDBPyConnection, names: str) -> list[str]:
    """Columns of the model: every cue/bin/flag seen, frequent templates, the top tokens."""
    rows = con.execute(
        f"""WITH df AS (SELECT name, count(*) AS n FROM {names} GROUP BY name)
            SELECT name FROM df WHERE NOT (name LIKE 'tok:%' OR name LIKE 'tmpl:%')
            UNION ALL SELECT name FROM df WHERE name LIKE 'tmpl:%' AND n >= {MIN_TEMPLATE_ROWS}
            UNION ALL SELECT name FROM (
                SELECT name FROM df WHERE name LIKE 'tok:%' AND n >= {MIN_DF}
                ORDER BY n DESC, name LIMIT {MAX_VOCAB})"""
    ).fetchall()
    return sorted(str(r[0]) for r in rows)


def _register_vocab(con: duckdb.DuckDBPyConnection, names: list[str]) -> None:
    con.execute("SELECT 1").fetchall()  # settle any half-read result: register() refuses otherwise
    arrow = pa.table({"name": pa.array(names, pa.string()),
                      "col": pa.array(range(len(names)), pa.int64())})  # fmt: skip
    con.register("_dif_vocab_arrow", arrow)
    con.execute("CREATE OR REPLACE TEMP TABLE _dif_vocab AS SELECT * FROM _dif_vocab_arrow")
    con.unregister("_dif_vocab_arrow")


def _design(con: duckdb.DuckDBPyConnection, rows: str, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    """The binary design matrix of the rows in `rows` over the columns of `_dif_vocab`."""
    table = _arrow(
        con,
        f"""SELECT n.rn, v.col FROM ({_names_sql(rows, "_dif_vocab")}) n
            JOIN _dif_vocab v USING (name)""",
    )
    rns = table.column("rn").to_numpy().astype(np.int64)
    cols = table.column("col").to_numpy().astype(np.int64)
    return _csr(rns, cols, n_rows, n_cols)


def _logits(x: sparse.csr_matrix, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    z = np.asarray(x @ w)  # (n, 3): per row, weights added in column order from 0.0
    return z + b


def _fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    if len(y) == 0:
        return 1.0

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        log_norm = np.log(np.exp(s).sum(axis=1))
        return float(np.mean(log_norm - s[np.arange(len(y)), y]))

    # Only ever soften: weak labels that the model reproduces perfectly would otherwise push the
    # temperature towards 0 and every confidence to 1, which says nothing about true difficulty.
    result = minimize_scalar(nll, bounds=(0.0, np.log(20.0)), method="bounded",
                             options={"xatol": 1e-6})  # fmt: skip
    return float(np.exp(result.x))


def probabilities(z: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities in whole millionths, as routing.Classifier.predict computes them."""
    s = z / temperature
    e = np.exp(s - s.max(axis=1, keepdims=True))
    total = e[:, 0] + e[:, 1] + e[:, 2]
    return np.floor(e / total[:, None] * MICRO + 0.5).astype(np.int64)


def train(
    con: duckdb.DuckDBPyConnection, *, seed: int = 0, sample_size: int = SAMPLE_SIZE
) -> tuple[dict[str, Any], TrainingReport]:
    """Fit on a seeded sample of rule-labelled, non-failed requests; return (model JSON, report).

    Needs `dif_features` and `dif_labels` (see features.build_features, heuristics.apply_rules).
    """
    from sklearn.linear_model import LogisticRegression

    order = f"md5(request_id || ':' || {int(seed)})"
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dif_train AS
            SELECT (row_number() OVER (ORDER BY {order}, request_id) - 1)::BIGINT AS rn,
                   request_id, rule_label
            FROM (SELECT f.request_id, l.rule_label FROM dif_features f
                  JOIN dif_labels l USING (request_id)
                  WHERE l.rule_label IS NOT NULL AND NOT f.is_error
                  ORDER BY {order}, request_id LIMIT {int(sample_size)})"""
    )
    labelled = int(con.execute(
        """SELECT count(*) FROM dif_labels l JOIN dif_features f USING (request_id)
           WHERE l.rule_label IS NOT NULL AND NOT f.is_error"""
    ).fetchall()[0][0])  # fmt: skip
    labels = con.execute("SELECT rule_label FROM _dif_train ORDER BY rn").fetchall()
    y_all = np.array([CLASSES.index(r[0]) for r in labels], dtype=np.int64)
    n = len(y_all)
    present = sorted(set(y_all.tolist()))
    if n < 20 or len(present) < 2:
        return _prior_model(y_all, seed, labelled, "too few labelled requests" if n < 20
                            else "the rules found only one difficulty")  # fmt: skip
    con.execute(f"CREATE OR REPLACE TEMP TABLE _dif_train_names AS {_names_sql('_dif_train', None)}")
    feature_names = _select_features(con, "_dif_train_names")
    con.execute("DROP TABLE _dif_train_names")
    _register_vocab(con, feature_names)
    x_all = _design(con, "_dif_train", n, len(feature_names))
    heldout = (np.arange(n) % _HELDOUT_EVERY == _HELDOUT_EVERY - 1) if n >= 200 else np.zeros(n, bool)
    fit = ~heldout
    if len(set(y_all[fit].tolist())) < 2:
        fit, heldout = np.ones(n, bool), np.zeros(n, bool)
    model = LogisticRegression(C=C, class_weight="balanced", max_iter=2000, random_state=seed)
    model.fit(x_all[fit], y_all[fit])
    w = np.zeros((len(feature_names), 3))
    b = np.full(3, MISSING_CLASS_LOGIT)
    classes = [int(c) for c in model.classes_]
    if len(classes) == 2:  # binary: one vector, the log-odds of classes[1] against classes[0]
        w[:, classes[1]] = model.coef_[0]
        b[classes[0]], b[classes[1]] = 0.0, float(model.intercept_[0])
    else:
        for row, c in enumerate(classes):
            w[:, c] = model.coef_[row]
            b[c] = float(model.intercept_[row])
    temperature = 1.0
    agreement = None
    if heldout.any():
        z = _logits(x_all[heldout], w, b)
        temperature = _fit_temperature(z, y_all[heldout])
        predicted = _best(probabilities(z, temperature))
        agreement = float(np.mean(predicted == y_all[heldout]))
    report = TrainingReport(
        seed=seed, labelled_rows=labelled, trained_on=int(fit.sum()), heldout=int(heldout.sum()),
        heldout_agreement=agreement, temperature=temperature,
        classes_present=[CLASSES[c] for c in classes], features=len(feature_names),
        vocabulary=sum(1 for f in feature_names if f.startswith("tok:")),
        templates=sum(1 for f in feature_names if f.startswith("tmpl:")),
    )  # fmt: skip
    return _export(feature_names, w, b, temperature, report), report


def _prior_model(y: np.ndarray, seed: int, labelled: int, why: str) -> tuple[dict[str, Any], TrainingReport]:
    counts = np.bincount(y, minlength=3) + 1.0  # add-one: an unseen class is unlikely, not impossible
    b = np.log(counts / counts.sum())
    report = TrainingReport(seed, labelled, len(y), 0, None, 1.0,
                            [CLASSES[c] for c in sorted(set(y.tolist()))], 0, 0, 0, why)  # fmt: skip
    return _export([], np.zeros((0, 3)), b, 1.0, report), report


def _export(names: list[str], w: np.ndarray, b: np.ndarray, temperature: float,
            report: TrainingReport) -> dict[str, Any]:  # fmt: skip
    return {
        "format": CLASSIFIER_FORMAT,
        "classes": list(CLASSES),
        "temperature": float(temperature),
        "intercept": [float(v) for v in b],
        "features": [[name, [float(v) for v in w[i]]] for i, name in enumerate(names)],
        "training": asdict(report),
    }


def _best(probs: np.ndarray) -> np.ndarray:
    """Argmax of micro-probabilities; ties go to the harder class (routing.Classifier.predict)."""
    return np.argmax(probs * 4 + np.arange(3), axis=1)


@dataclass
class _Loaded:
    names: np.ndarray
    name_rank: np.ndarray
    w: np.ndarray
    b: np.ndarray
    temperature: float
    contrib: np.ndarray


def _load(model: dict[str, Any]) -> _Loaded:
    names = [f[0] for f in model["features"]]
    w = np.array([f[1] for f in model["features"]], dtype=np.float64).reshape(len(names), 3)
    ranks = {n: i for i, n in enumerate(sorted(names))}
    mean = (w[:, 0] + w[:, 1] + w[:, 2]) / 3
    return _Loaded(
        np.array(names, dtype=object), np.array([ranks[n] for n in names], dtype=np.int64), w,
        np.array(model["intercept"], dtype=np.float64), float(model["temperature"]),
        w - mean[:, None],
    )  # fmt: skip


def _top_features(x: sparse.csr_matrix, best: np.ndarray, m: _Loaded, k: int = 3) -> pa.Array:
    rows = np.repeat(np.arange(x.shape[0]), np.diff(x.indptr))
    cols = x.indices.astype(np.int64)
    values = m.contrib[cols, best[rows]] if len(cols) else np.zeros(0)
    keep = values > 0
    rows, cols, values = rows[keep], cols[keep], values[keep]
    order = np.lexsort((m.name_rank[cols], -values, rows))
    rows, cols = rows[order], cols[order]
    first = np.searchsorted(rows, rows, side="left")
    take = (np.arange(len(rows)) - first) < k
    rows, cols = rows[take], cols[take]
    counts = np.bincount(rows, minlength=x.shape[0])
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    values_arr = pa.array(m.names[cols].tolist(), pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values_arr)


def score(con: duckdb.DuckDBPyConnection, model: dict[str, Any], *, chunk_rows: int = CHUNK_ROWS) -> None:
    """Write `dif_scores` (request_id, p_easy/p_medium/p_hard and confidence in millionths,
    predicted difficulty, top_features) for every row of `dif_features`, chunk by chunk."""
    m = _load(model)
    _register_vocab(con, [str(n) for n in m.names])
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _dif_order AS
           SELECT (row_number() OVER (ORDER BY request_id) - 1)::BIGINT AS rn, request_id
           FROM dif_features"""
    )
    total = int(con.execute("SELECT count(*) FROM _dif_order").fetchall()[0][0])
    con.execute(
        """CREATE OR REPLACE TEMP TABLE dif_scores (request_id VARCHAR, p_easy INTEGER,
           p_medium INTEGER, p_hard INTEGER, difficulty VARCHAR, confidence_micro INTEGER,
           top_features VARCHAR[])"""
    )
    for start, stop in _chunks(total, chunk_rows):
        con.execute(
            f"""CREATE OR REPLACE TEMP TABLE _dif_chunk AS
                SELECT rn - {start} AS rn, request_id FROM _dif_order
                WHERE rn >= {start} AND rn < {stop}"""
        )
        ids = _arrow(con, "SELECT request_id FROM _dif_chunk ORDER BY rn")
        x = _design(con, "_dif_chunk", stop - start, len(m.names))
        probs = probabilities(_logits(x, m.w, m.b), m.temperature)
        best = _best(probs)
        batch = pa.table({
            "request_id": ids.column("request_id"),
            "p_easy": pa.array(probs[:, 0], pa.int32()),
            "p_medium": pa.array(probs[:, 1], pa.int32()),
            "p_hard": pa.array(probs[:, 2], pa.int32()),
            "difficulty": pa.array(np.array(CLASSES, dtype=object)[best].tolist(), pa.string()),
            "confidence_micro": pa.array(probs[np.arange(len(best)), best], pa.int32()),
            "top_features": _top_features(x, best, m),
        })  # fmt: skip
        con.execute("SELECT 1").fetchall()
        con.register("_dif_batch", batch)
        con.execute("INSERT INTO dif_scores SELECT * FROM _dif_batch")
        con.unregister("_dif_batch")
    for table in ("_dif_chunk", "_dif_order"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(total, start + size)
