"""The difficulty classifier: scikit-learn logistic regression on the user's own traffic.

Trained on the weak labels of the heuristics (rules/difficulty.yaml: cues, output length, feedback,
errors, templates already served by a cheaper tier) but fed only request-time features, so a
router can run it before the call. Features are binary (task cues, size bins, flags, the template
id, word tokens of the system prompt and last user message, only those the vocabulary policy vets:
see vocabulary.py). A fifth of the labelled rows is held out of the fit: half of it sets the
temperature of the probabilities, the other half, used for nothing else, checks how well the
calibrated confidence predicts the log's own labels (TrainedModel.checked). Everything is seeded:
the same store gives the same model.

The model is exported as plain JSON (routing.CLASSIFIER_FORMAT) and scored here with numpy in the
exact arithmetic order of the pure-Python `routing.Classifier`, so both give the same decisions.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
from scipy import sparse

from advisor.difficulty.features import active_names_sql, text_tokens_sql, token_keys_sql
from advisor.difficulty.vocabulary import VocabularyPolicy, vet
from advisor.routing import CLASSES, CLASSIFIER_FORMAT, MICRO, word_hash

SAMPLE_SIZE = 100_000  # training rows at most: enough for a linear model, bounded time at 1M+
CHUNK_ROWS = 50_000  # rows scored per pass: bounds memory whatever the size of the log (~200 MB)
MIN_TEMPLATE_ROWS = 10
C = 0.1  # strong L2: many near-duplicate binary features, and labels that are only heuristics
MISSING_CLASS_LOGIT = -1e4  # a class absent from the weak labels: probability exp(-1e4) = 0
_HELDOUT_EVERY = 10  # of each ten rows: one sets the temperature, one checks the calibration
_TEMPER_ROW, _CHECK_ROW = 4, 9
# Weak labels are heuristics: read them as wrong this often when calibrating, so that confidences
# spread below 1 and the routing threshold separates clear cases from doubtful ones.
LABEL_NOISE = 0.05
MAX_TEMPERATURE = 100.0


@dataclass
class TrainingReport:
    seed: int
    labelled_rows: int
    trained_on: int
    heldout: int  # rows kept out of the fit: half set the temperature, half check it
    temperature: float
    classes_present: list[str]
    features: int
    vocabulary: int
    templates: int
    fallback: str | None = None  # why a prior-only model was used, if it was
    vocabulary_hashed: int = 0  # words the router matches by hash only (vocabulary policy)
    vocabulary_withheld: int = 0  # frequent words the vocabulary policy kept out of the router


def _arrow(con: duckdb.DuckDBPyConnection, sql: str) -> pa.Table:
    con.execute("SELECT 1").fetchall()  # settle any half-read result: con.sql() refuses otherwise
    return con.sql(sql).to_arrow_table()


def _ints(table: pa.Table, column: str) -> np.ndarray:
    return table.column(column).to_numpy().astype(np.int64, copy=False)


def _matrix(
    con: duckdb.DuckDBPyConnection, rows: str, n_rows: int, vocab: str | None
) -> tuple[sparse.csr_matrix, list[str]]:
    """The binary design matrix of the rows of table `rows` (rn, request_id), and its columns.

    With `vocab` (a table registered by `_register_vocab`) the columns are that vocabulary;
    without, every name the rows use, sorted. Token features are computed per distinct text and
    spread to requests by sparse row indexing, not per request in SQL.
    """
    con.execute(
        f"""CREATE OR REPLACE TEMP TABLE _dif_texts AS
            SELECT h, (row_number() OVER (ORDER BY h) - 1)::BIGINT AS hid FROM (
                SELECT DISTINCT h FROM (
                    SELECT f.system_hash AS h FROM {rows} b JOIN dif_features f USING (request_id)
                    UNION ALL
                    SELECT f.user_hash FROM {rows} b JOIN dif_features f USING (request_id))
                WHERE h IS NOT NULL)"""
    )
    con.execute(f"CREATE OR REPLACE TEMP TABLE _dif_other AS {active_names_sql(rows)}")
    if vocab is None:
        con.execute(f"CREATE OR REPLACE TEMP TABLE _dif_tok AS {text_tokens_sql('_dif_texts')}")
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _dif_names AS
               SELECT name, (row_number() OVER (ORDER BY name) - 1)::BIGINT AS col
               FROM (SELECT DISTINCT 'tok:' || tok AS name FROM _dif_tok
                     UNION SELECT name FROM _dif_other)"""
        )
        con.execute(
            """CREATE OR REPLACE TEMP TABLE _dif_keys AS
               SELECT substr(name, 5) AS tok, col FROM _dif_names WHERE name LIKE 'tok:%'"""
        )
        tok_sql = "SELECT t.hid, k.col FROM _dif_tok t JOIN _dif_keys k USING (tok)"
        names_table = "_dif_names"
    else:
        keys = f"SELECT tok, col FROM {vocab}_tok"
        if con.execute(f"SELECT count(*) FROM {vocab}_tok WHERE tok LIKE 'h:%'").fetchall()[0][0]:
            keys = token_keys_sql("_dif_texts", f"{vocab}_tok")  # hashes every distinct token
        con.execute(f"CREATE OR REPLACE TEMP TABLE _dif_keys AS {keys}")
        tok_sql = text_tokens_sql("_dif_texts", "_dif_keys")
        names_table = vocab
    names = [
        str(r[0]) for r in con.execute(f"SELECT name FROM {names_table} ORDER BY col").fetchall()
    ]
    n_texts = int(con.execute("SELECT count(*) FROM _dif_texts").fetchall()[0][0])
    tok = _arrow(con, tok_sql)
    other = _arrow(con, f"SELECT o.rn, v.col FROM _dif_other o JOIN {names_table} v USING (name)")
    ids = _arrow(
        con,
        f"""SELECT b.rn, coalesce(ts.hid, {n_texts}) AS s, coalesce(tu.hid, {n_texts}) AS u
            FROM {rows} b JOIN dif_features f USING (request_id)
            LEFT JOIN _dif_texts ts ON ts.h = f.system_hash
            LEFT JOIN _dif_texts tu ON tu.h = f.user_hash ORDER BY b.rn""",
    )
    n_cols = len(names)
    per_text = _csr(_ints(tok, "hid"), _ints(tok, "col"), n_texts + 1, n_cols)  # last row: empty
    del tok  # the token stream is the largest thing held here: free it before the matrix grows
    other_x = _csr(_ints(other, "rn"), _ints(other, "col"), n_rows, n_cols)
    x = _union([per_text[_ints(ids, "s")], per_text[_ints(ids, "u")], other_x], n_cols)
    x.data[:] = 1.0
    for table in ("_dif_texts", "_dif_tok", "_dif_other", "_dif_names", "_dif_keys"):
        con.execute(f"DROP TABLE IF EXISTS {table}")
    return x, names


def _union(parts: list[sparse.csr_matrix], n_cols: int) -> sparse.csr_matrix:
    """Row by row, the columns of all `parts` (same rows), each once, sorted: their sum's
    pattern, laid out in one pass instead of adding the matrices two at a time."""
    lengths = [np.diff(p.indptr).astype(np.int64) for p in parts]
    indptr = np.zeros(parts[0].shape[0] + 1, dtype=np.int64)
    np.cumsum(sum(lengths), out=indptr[1:])
    indices = np.empty(int(indptr[-1]), dtype=parts[0].indices.dtype)
    start = indptr[:-1].copy()  # where the next part's columns of each row go
    for part, n in zip(parts, lengths, strict=True):
        indices[np.repeat(start - part.indptr[:-1], n) + np.arange(part.nnz)] = part.indices
        start += n
    x = sparse.csr_matrix(
        (np.ones(len(indices)), indices, indptr), shape=(parts[0].shape[0], n_cols)
    )
    x.sum_duplicates()  # sorts each row's columns, then merges repeats
    return x


def _csr(rows: np.ndarray, cols: np.ndarray, n_rows: int, n_cols: int) -> sparse.csr_matrix:
    data = np.ones(len(rows), dtype=np.float64)
    x = sparse.csr_matrix((data, (rows, cols)), shape=(n_rows, n_cols))
    x.sum_duplicates()
    return x


def _select_features(x: sparse.csr_matrix, names: list[str], tokens: list[int]) -> np.ndarray:
    """Columns kept: every cue/bin/flag seen, frequent templates, the vetted tokens."""
    df = np.asarray(x.getnnz(axis=0))
    keep = set(tokens) | {
        i
        for i, n in enumerate(names)
        if (n.startswith("tmpl:") and df[i] >= MIN_TEMPLATE_ROWS)
        or not n.startswith(("tok:", "tmpl:"))
    }
    return np.array(sorted(keep), dtype=np.int64)


def _register_vocab(
    con: duckdb.DuckDBPyConnection, names: list[str], words: Mapping[str, str] | None = None
) -> None:
    """Register `_dif_vocab` (name, col) and `_dif_vocab_tok` (tok, col). A hashed word whose
        plain word `words` gives is registered under that word; one it does not is registered under
    'h:' and its hash, for token_keys_sql to find."""
    words = words or {}
    con.execute("SELECT 1").fetchall()  # settle any half-read result: register() refuses otherwise
    arrow = pa.table(
        {
            "name": pa.array(names, pa.string()),
            "col": pa.array(range(len(names)), pa.int64()),
            "word": pa.array([words.get(n) for n in names], pa.string()),
        }
    )
    con.register("_dif_vocab_arrow", arrow)
    con.execute("CREATE OR REPLACE TEMP TABLE _dif_vocab AS SELECT * FROM _dif_vocab_arrow")
    con.unregister("_dif_vocab_arrow")
    con.execute(
        """CREATE OR REPLACE TEMP TABLE _dif_vocab_tok AS
           SELECT substr(name, 5) AS tok, col FROM _dif_vocab WHERE name LIKE 'tok:%'
           UNION ALL
           SELECT coalesce(word, 'h:' || substr(name, 6)), col FROM _dif_vocab
           WHERE name LIKE 'tokh:%'"""
    )


def _logits(x: sparse.csr_matrix, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    z = np.asarray(x @ w)  # (n, 3): per row, weights added in column order from 0.0
    return z + b


def _fit_temperature(z: np.ndarray, y: np.ndarray) -> float:
    """The temperature that best fits the held-out weak labels, read as right LABEL_NOISE less
    often than they say (label smoothing): a model that reproduces heuristic labels perfectly
    has learnt the heuristics, not the difficulty, and must not report near-certainty."""
    if len(y) == 0:
        return 1.0
    from scipy.optimize import minimize_scalar  # only when training

    target = np.full(z.shape, LABEL_NOISE / (z.shape[1] - 1))
    target[np.arange(len(y)), y] = 1.0 - LABEL_NOISE

    def nll(log_t: float) -> float:
        s = z / np.exp(log_t)
        s = s - s.max(axis=1, keepdims=True)
        log_p = s - np.log(np.exp(s).sum(axis=1))[:, None]
        # a class absent from the labels has logit -1e4: its term is 0 * -inf-like, skip it
        present = z > MISSING_CLASS_LOGIT / 2
        return float(-np.mean(np.sum(np.where(present, target * log_p, 0.0), axis=1)))

    # Only ever soften: the labels cannot justify more confidence than the fit gives.
    result = minimize_scalar(
        nll, bounds=(0.0, np.log(MAX_TEMPERATURE)), method="bounded", options={"xatol": 1e-6}
    )
    return float(np.exp(result.x))


def probabilities(z: np.ndarray, temperature: float) -> np.ndarray:
    """Probabilities in whole millionths, as routing.Classifier.predict computes them."""
    s = z / temperature
    e = np.exp(s - s.max(axis=1, keepdims=True))
    total = e[:, 0] + e[:, 1] + e[:, 2]
    return np.floor(e / total[:, None] * MICRO + 0.5).astype(np.int64)


@dataclass
class TrainedModel:
    model: dict[str, Any]  # the JSON the router runs (routing.CLASSIFIER_FORMAT)
    report: TrainingReport
    # (confidence of the predicted class, whether the log's label is that class) of the held-out
    # rows that neither fitted the weights nor set the temperature
    checked: list[tuple[float, bool]]
    # the plain word behind each hashed column (tokh:HASH -> word), known only in training:
    # scoring looks the words up directly instead of hashing every token of every text
    words: dict[str, str] = field(default_factory=dict)


def train(
    con: duckdb.DuckDBPyConnection,
    vocabulary: VocabularyPolicy,
    *,
    seed: int = 0,
    sample_size: int = SAMPLE_SIZE,
) -> TrainedModel:
    """Fit on a seeded sample of rule-labelled, non-failed requests.

    Needs `dif_features` and `dif_labels` (see features.build_features, heuristics.apply_rules).
    Only words the `vocabulary` policy vets become features (see vocabulary.vet).
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
    labelled = int(
        con.execute(
            """SELECT count(*) FROM dif_labels l JOIN dif_features f USING (request_id)
           WHERE l.rule_label IS NOT NULL AND NOT f.is_error"""
        ).fetchall()[0][0]
    )
    labels = con.execute("SELECT rule_label FROM _dif_train ORDER BY rn").fetchall()
    y_all = np.array([CLASSES.index(r[0]) for r in labels], dtype=np.int64)
    n = len(y_all)
    present = sorted(set(y_all.tolist()))
    if n < 20 or len(present) < 2:
        return _prior_model(
            y_all,
            seed,
            labelled,
            "too few labelled requests" if n < 20 else "the rules found only one difficulty",
        )
    x_every, every = _matrix(con, "_dif_train", n, None)
    vetting = vet(con, "_dif_train", x_every, every, vocabulary)
    keep = _select_features(x_every, every, vetting.kept + vetting.hashed)
    hashed = set(vetting.hashed)
    # columns in name order, a hashed word under its hash: ties break by name in both scorers
    named = sorted(
        (f"tokh:{word_hash(every[i][4:])}" if i in hashed else every[i], i) for i in keep
    )
    feature_names = [name for name, _ in named]
    keep = np.array([i for _, i in named], dtype=np.int64)
    x_all = sparse.csr_matrix(x_every[:, keep])
    x_all.sort_indices()
    slot = np.arange(n) % _HELDOUT_EVERY
    temper = (slot == _TEMPER_ROW) if n >= 200 else np.zeros(n, bool)
    check = (slot == _CHECK_ROW) if n >= 200 else np.zeros(n, bool)
    fit = ~(temper | check)
    if len(set(y_all[fit].tolist())) < 2:
        fit, temper, check = np.ones(n, bool), np.zeros(n, bool), np.zeros(n, bool)
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
    if temper.any():
        temperature = _fit_temperature(_logits(x_all[temper], w, b), y_all[temper])
    checked: list[tuple[float, bool]] = []
    if check.any():
        probs = probabilities(_logits(x_all[check], w, b), temperature)
        best = _best(probs)
        confidence = probs[np.arange(len(best)), best] / MICRO
        checked = list(zip(confidence.tolist(), (best == y_all[check]).tolist(), strict=True))
    report = TrainingReport(
        seed=seed,
        labelled_rows=labelled,
        trained_on=int(fit.sum()),
        heldout=int((temper | check).sum()),
        temperature=temperature,
        classes_present=[CLASSES[c] for c in classes],
        features=len(feature_names),
        vocabulary=sum(1 for f in feature_names if f.startswith("tok:")),
        templates=sum(1 for f in feature_names if f.startswith("tmpl:")),
        vocabulary_hashed=len(vetting.hashed),
        vocabulary_withheld=vetting.withheld,
    )
    words = {f"tokh:{word_hash(every[i][4:])}": every[i][4:] for i in keep if i in hashed}
    return TrainedModel(_export(feature_names, w, b, temperature, report), report, checked, words)


def _prior_model(y: np.ndarray, seed: int, labelled: int, why: str) -> TrainedModel:
    counts = (
        np.bincount(y, minlength=3) + 1.0
    )  # add-one: an unseen class is unlikely, not impossible
    b = np.log(counts / counts.sum())
    report = TrainingReport(
        seed,
        labelled,
        len(y),
        0,
        1.0,
        [CLASSES[c] for c in sorted(set(y.tolist()))],
        0,
        0,
        0,
        why,
    )
    return TrainedModel(_export([], np.zeros((0, 3)), b, 1.0, report), report, [])


def _export(
    names: list[str], w: np.ndarray, b: np.ndarray, temperature: float, report: TrainingReport
) -> dict[str, Any]:
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
        np.array(names, dtype=object),
        np.array([ranks[n] for n in names], dtype=np.int64),
        w,
        np.array(model["intercept"], dtype=np.float64),
        float(model["temperature"]),
        w - mean[:, None],
    )


def _row_argmax(
    values: np.ndarray, indptr: np.ndarray, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per CSR row (`rows`: the row of each value): (largest value, its position in `values`,
    first one on ties); rows without values give (-inf, -1). Vectorised with reduceat: no
    per-row Python."""
    n = len(indptr) - 1
    best = np.full(n, -np.inf)
    where = np.full(n, -1, dtype=np.int64)
    filled = np.diff(indptr) > 0
    if not filled.any():
        return best, where
    starts = indptr[:-1][filled]
    best[filled] = np.maximum.reduceat(values, starts)
    position = np.arange(len(values))
    candidate = np.where(values == best[rows], position, len(values))
    where[filled] = np.minimum.reduceat(candidate, starts)
    return best, where


def _top_features(x: sparse.csr_matrix, best: np.ndarray, m: _Loaded, k: int = 3) -> pa.Array:
    """Per row, the (at most k) active features that push most towards the predicted class.

    Columns are sorted by name and a row's indices ascend, so the first of equal values is the
    smallest name: the tie order of routing.Classifier.predict.
    """
    n = x.shape[0]
    if x.shape[1] == 0:  # a prior-only model has no features to name
        return pa.array([[] for _ in range(n)], pa.list_(pa.string()))
    rows = np.repeat(np.arange(n), np.diff(x.indptr))
    values = m.contrib[x.indices, best[rows]] if x.nnz else np.zeros(0)
    # only a feature that pushes towards the class is named: the others are dropped up front,
    # in order, so that the k rounds below run over a fraction of the matrix
    push = values > 0
    values, cols, rows = values[push], x.indices[push], rows[push]
    indptr = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n), out=indptr[1:])
    picked = np.full((n, k), -1, dtype=np.int64)
    for i in range(k):
        top, where = _row_argmax(values, indptr, rows)
        hit = top > 0
        picked[hit, i] = cols[where[hit]]
        values[where[hit]] = -np.inf
    counts = (picked >= 0).sum(axis=1)
    offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int32)
    flat = picked[picked >= 0]  # row-major: each row's picks in order
    return pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(m.names[flat].tolist(), pa.string())
    )


def score(
    con: duckdb.DuckDBPyConnection,
    model: dict[str, Any],
    *,
    words: Mapping[str, str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> None:
    """Write `dif_scores` (request_id, p_easy/p_medium/p_hard and confidence in millionths,
    predicted difficulty, top_features) for every row of `dif_features`, chunk by chunk.
    `words`: TrainedModel.words, when the model was just trained."""
    m = _load(model)
    _register_vocab(con, [str(n) for n in m.names], words)
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
        x, _ = _matrix(con, "_dif_chunk", stop - start, "_dif_vocab")
        probs = probabilities(_logits(x, m.w, m.b), m.temperature)
        best = _best(probs)
        batch = pa.table(
            {
                "request_id": ids.column("request_id"),
                "p_easy": pa.array(probs[:, 0], pa.int32()),
                "p_medium": pa.array(probs[:, 1], pa.int32()),
                "p_hard": pa.array(probs[:, 2], pa.int32()),
                "difficulty": pa.array(np.array(CLASSES, dtype=object)[best].tolist(), pa.string()),
                "confidence_micro": pa.array(probs[np.arange(len(best)), best], pa.int32()),
                "top_features": _top_features(x, best, m),
            }
        )
        con.execute("SELECT 1").fetchall()
        con.register("_dif_batch", batch)
        con.execute("INSERT INTO dif_scores SELECT * FROM _dif_batch")
        con.unregister("_dif_batch")
    for table in ("_dif_chunk", "_dif_order"):
        con.execute(f"DROP TABLE IF EXISTS {table}")


def _chunks(total: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, total, size):
        yield start, min(total, start + size)
