"""``train(FraudConfig(...)) -> bundle path``: validate, build features, split, fit, evaluate, bundle.

Read top to bottom: the table is validated (bad rows are an error, or skipped and counted
with ``invalid_rows: skip``), features are built once over the whole table (leak-free by
construction, see :mod:`features`), the split is time-based when there is a timestamp, the
imbalance handling and the rounds (early stopping) are chosen on validation AUC-PR, the threshold
on validation cost; then (``refit: true``, the default) the final booster is trained again on fit +
validation rows with the chosen parameters, and the test period gives the reported numbers.

The refit never changes what was chosen out of sample: the threshold, the optional MLP blend
weight and the validation report come from the pre-refit model's validation scores (the refit
model has seen those rows). In a time split the validation period ends where the label-delay gap
begins, so every refit row's label was known at the test start.
"""
from __future__ import annotations

import datetime as dt
import logging
import tempfile
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from lepton_apps.errors import ConfigError, DataError

from . import model as fm
from .config import FraudConfig
from .data import read_table, summary, validate
from .evaluate import fraud_report, plot_score_distribution, plot_threshold, summarise_folds, threshold_sweep
from .features import FeatureSpec, Stream, encode_user_columns, feature_matrix, make_stream
from .online import OnlineState
from .split import Split, fraction_split, prequential_splits, stratified_split, time_split

log = logging.getLogger(__name__)
Progress = Callable[[str, float], None]


def prepare(df: pd.DataFrame, cfg: FraudConfig, *, need_label: bool = True):
    """Validate ``df``; return (validation, valid frame, stream) or raise DataError on bad rows."""
    v = validate(df, cfg.columns, need_label=need_label)
    if v.n_invalid and cfg.invalid_rows == "error":
        first = "; ".join(f"row {i}: {v.row_errors.iloc[i]}" for i in np.flatnonzero(~v.valid)[:3])
        raise DataError(f"{v.n_invalid} of {v.n_rows} rows have problems {v.problem_counts()} (first: {first})",
                        where=cfg.data, fix="correct those rows, or pass --skip-invalid (invalid_rows: skip) to "
                                            "leave them out of training (they are counted in the report)")
    keep = v.valid
    frame = df.loc[keep].reset_index(drop=True)
    return v, frame, make_stream(frame, v.roles, v.seconds[keep] if v.seconds is not None else None,
                                 v.labels[keep] if v.labels is not None else None)


def choose_split(cfg: FraudConfig, stream: Stream, y: np.ndarray) -> tuple[Split, list[Split]]:
    """Return the main split and (for prequential) the extra folds."""
    delay = cfg.label_delay_days if cfg.delay_days is None else cfg.delay_days
    kw = dict(test_days=cfg.test_days, delay_days=delay, train_days=cfg.train_days, val_days=cfg.val_days)
    if stream.t is None:
        if cfg.split in ("time", "prequential", "fraction"):
            raise ConfigError(f"split {cfg.split!r} needs a timestamp column", where="split",
                              fix="name the timestamp with --timestamp COLUMN, or use split: stratified")
        return stratified_split(y, cfg.seed), []
    if cfg.split == "stratified":
        return stratified_split(y, cfg.seed), []
    if cfg.split == "fraction":
        return fraction_split(stream.t), []
    if cfg.split == "prequential":
        folds = prequential_splits(stream.t, cfg.n_folds, **kw)
        if not folds:
            raise DataError("no prequential fold fits in the data's time span", where="split",
                            fix="lower test_days / delay_days or use split: time")
        return folds[0], folds[1:]
    try:
        return time_split(stream.t, **kw), []
    except DataError:
        if cfg.split == "time":
            raise
        return fraction_split(stream.t), []


def _fit_best(cfg: FraudConfig, params: dict, x: np.ndarray, y: np.ndarray, split: Split, spec: FeatureSpec,
              progress: Progress | None):
    """Try the imbalance options (and the optional search); return (booster, params, choice log)."""
    x_fit, y_fit, x_val, y_val = x[split.fit], y[split.fit], x[split.val], y[split.val]
    if y_val.sum() == 0 or y_fit.sum() == 0:
        raise DataError("the fit or validation period has no fraud rows", where="split",
                        fix="use a longer time span, a longer val_days, or split: stratified")
    options = fm.IMBALANCE[:2] if cfg.imbalance == "auto" else (cfg.imbalance,)
    tried, best = [], None
    for i, kind in enumerate(options):
        p = {**params, **fm.imbalance_params(kind, y_fit)}
        started = time.perf_counter()
        booster, ap = fm.fit(p, x_fit, y_fit, x_val, y_val, spec.names, spec.categorical_names,
                             cfg.max_rounds, cfg.early_stopping_rounds)
        tried.append({"imbalance": kind, "val_pr_auc": ap, "rounds": booster.best_iteration,
                      "seconds": round(time.perf_counter() - started, 2)})
        if best is None or ap > best[2]:
            best = (booster, p, ap, kind)
        if progress:
            progress(f"trained with imbalance={kind} (val AUC-PR {ap:.3f})", 0.3 + 0.3 * (i + 1) / len(options))
    booster, p, ap, kind = best
    trials: list[dict] = []
    if cfg.search_trials > 0:
        searched, trials = fm.search(p, (x_fit, y_fit, x_val, y_val), spec.names, spec.categorical_names,
                                     trials=cfg.search_trials, timeout_s=cfg.search_timeout_s, seed=cfg.seed,
                                     max_rounds=cfg.max_rounds, patience=cfg.early_stopping_rounds)
        cand, cand_ap = fm.fit(searched, x_fit, y_fit, x_val, y_val, spec.names, spec.categorical_names,
                               cfg.max_rounds, cfg.early_stopping_rounds)
        if cand_ap > ap:
            booster, p, ap = cand, searched, cand_ap
    return booster, p, {"imbalance": kind, "imbalance_tried": tried, "search_trials": trials, "val_pr_auc": ap}


def _refit(params: dict, kind: str, x: np.ndarray, y: np.ndarray, split: Split,
           spec: FeatureSpec, selected_rounds: int):
    """Retrain on the split's fit + validation rows with the chosen ``params`` (imbalance ``kind``
    recomputed on those rows) for the scaled rounds; return (booster, refit record for the report)."""
    rows = np.sort(np.r_[split.fit, split.val])
    p = {k: v for k, v in params.items() if k != "scale_pos_weight"}
    p.update(fm.imbalance_params(kind, y[rows]))
    rounds = fm.refit_rounds(selected_rounds, len(split.fit), len(rows))
    started = time.perf_counter()
    booster = fm.refit(p, x[rows], y[rows], spec.names, spec.categorical_names, rounds)
    info = {"enabled": True, "rows": int(len(rows)), "rounds": rounds, "selection_rows": int(len(split.fit)),
            "selection_rounds": int(selected_rounds), "rows_until": split.bounds.get("delay_start"),
            "seconds": round(time.perf_counter() - started, 2),
            "threshold_from": "validation scores of the model before the refit (out of sample)"}
    return booster, info


def _threshold(cfg: FraudConfig, y: np.ndarray, s: np.ndarray, amount: np.ndarray | None, n_days: float) -> float:
    from lepton_apps import metrics as M

    if cfg.threshold == "alert_budget":
        k = int(min(len(s), max(1, round(cfg.alert_budget * n_days))))
        return M.threshold_top_k(s, k, ties="exclude")
    return M.threshold_min_cost(y, s, cost_fn=cfg.cost_missed_fraud, cost_fp=cfg.cost_review, amounts=amount)


def _blend_mlp(cfg: FraudConfig, x: np.ndarray, y: np.ndarray, split: Split, s_val: np.ndarray,
               s_test: np.ndarray):
    """Train the optional MLP; return (val scores, test scores, report, net) of the better of
    LightGBM alone and the best LightGBM/MLP blend on validation AUC-PR."""
    from lepton_apps.metrics import pr_auc

    from . import mlp as fmlp

    net, scale = fmlp.fit(x[split.fit], y[split.fit], x[split.val], y[split.val], seed=cfg.seed)
    m_val = fmlp.predict(net, x[split.val], scale)
    lgb_ap = pr_auc(y[split.val], s_val)
    best_w, best_ap = 1.0, lgb_ap
    for w in fmlp.BLEND_WEIGHTS:
        ap = pr_auc(y[split.val], w * s_val + (1 - w) * m_val)
        if ap > best_ap + fmlp.MIN_GAIN * (best_w == 1.0):
            best_w, best_ap = w, ap
    info = {"val_pr_auc_lightgbm": lgb_ap, "val_pr_auc_mlp": pr_auc(y[split.val], m_val),
            "val_pr_auc_blend": best_ap, "blend_weight_lightgbm": best_w, "used": best_w < 1.0, "scale": scale}
    if best_w < 1.0:
        s_val = best_w * s_val + (1 - best_w) * m_val
        s_test = best_w * s_test + (1 - best_w) * fmlp.predict(net, x[split.test], scale)
    return s_val, s_test, info, net


def state_frame(stream: Stream, spec: FeatureSpec) -> pd.DataFrame:
    """Return the online state (recent history per entity) after the whole stream, as a table."""
    if stream.t is None:
        return OnlineState(spec).to_frame()
    keep_s = int(max(spec.windows_days) * 86400) + spec.delay_s
    rows = np.flatnonzero(stream.t > stream.t.max() - keep_s)
    rows = rows[np.argsort(stream.t[rows], kind="stable")]
    parts = []
    ids = stream.tx_id[rows].astype(str) if stream.tx_id is not None else np.full(len(rows), "")
    if spec.has("customer"):
        parts.append(pd.DataFrame({"kind": "customer", "key": stream.customer[rows], "t": stream.t[rows],
                                   "value": stream.cents[rows] if stream.cents is not None else 0, "tx_id": ""}))
    if spec.has("terminal") and spec.has("label"):
        parts.append(pd.DataFrame({"kind": "terminal", "key": stream.terminal[rows], "t": stream.t[rows],
                                   "value": stream.label[rows].astype(np.int64), "tx_id": ids}))
    if not parts:
        return OnlineState(spec).to_frame()
    out = pd.concat(parts, ignore_index=True)
    return out.astype({"kind": "string", "key": "string", "t": np.int64, "value": np.int64, "tx_id": "string"})


PROFILE_ROWS = 200_000  # test-period rows profiled for monitoring at most (a seeded sample beyond)


def reference_profile(spec: FeatureSpec, x: np.ndarray, valid: pd.DataFrame, stream: Stream,
                      score_rows: np.ndarray, scores: np.ndarray, *, seed: int = 0, source: str = ""):
    """Return the monitoring :class:`~lepton_apps.monitor.Profile` of the training data: the model's features of
    every training row under readable names (categorical user columns as text), and the out-of-sample ``scores``
    of ``score_rows`` (aligned with them); each feature and the score on the rows whose history and labels are
    complete, as a monitored window's are judged (:func:`~lepton_apps.finance.monitoring.reference_judged`); at
    most :data:`PROFILE_ROWS` rows of each, a seeded sample beyond.

    The features' reference is the whole training period rather than its last days, because a few days are not
    the distribution the model learned: a test period of hours (ULB: the last 9 hours of two days) holds only
    some hours of the day, and a fraud campaign of a week moves the terminal rates of a week."""
    from lepton_apps.monitor import build_profile
    from lepton_apps.monitor.profile import profile_scores

    from .monitoring import monitor_columns, monitor_features, reference_judged

    rng = np.random.default_rng(seed)

    def at_most(rows: np.ndarray) -> np.ndarray:
        return rows if len(rows) <= PROFILE_ROWS else np.sort(rng.choice(rows, PROFILE_ROWS, replace=False))

    def in_time_order(rows: np.ndarray) -> np.ndarray:
        return rows[np.argsort(stream.t[rows], kind="stable")] if stream.t is not None else rows

    rows = in_time_order(at_most(np.arange(len(valid))))
    features = monitor_features(spec, x[rows], valid.iloc[rows].reset_index(drop=True))
    numeric, categorical = monitor_columns(spec)
    judged = reference_judged(spec, stream, rows)[0] if stream.t is not None else {}
    profile = build_profile(features, numeric=numeric, categorical=categorical, source=source, seed=seed,
                            judged=judged, ordered=stream.t is not None)
    score_rows, scores = np.asarray(score_rows), np.asarray(scores)
    pick = at_most(np.arange(len(score_rows)))
    if stream.t is not None:  # in time order, as the features' rows are
        pick = pick[np.argsort(stream.t[score_rows[pick]], kind="stable")]
    judged = reference_judged(spec, stream, score_rows[pick])[0] if stream.t is not None else {}
    profile.predictions = profile_scores(scores[pick], seed=seed, ordered=stream.t is not None,
                                         judged={"score": judged["score"]} if "score" in judged else None)
    return profile


def train(config: FraudConfig | dict, *, frame: pd.DataFrame | None = None, progress: Progress | None = None) -> Path:
    """Train a fraud model on ``config.data`` (or ``frame``); return the bundle folder path."""
    from lepton_apps.bundle import BundleWriter, fingerprint_data
    from lepton_apps.plots import plot_pr, save_figure

    cfg = config if isinstance(config, FraudConfig) else FraudConfig.from_dict(config)
    started = time.perf_counter()
    say = progress or (lambda msg, frac: log.info("%s", msg))
    df = frame if frame is not None else read_table(cfg.data, cfg.columns.missing_values)
    say("validating the data", 0.02)
    v, valid, stream = prepare(df, cfg)
    y = stream.label.astype(int)
    split, folds = choose_split(cfg, stream, y)
    seen = np.r_[split.fit, split.val]
    user = [c for c in v.user_columns if c not in v.categorical]
    cats = {c: sorted(pd.unique(valid[c].iloc[seen].dropna().astype(str)).tolist()) for c in v.categorical}
    spec = FeatureSpec(roles=v.roles, windows_days=list(cfg.windows_days), label_delay_days=cfg.label_delay_days,
                       numeric=user, categorical=cats)
    say("building features", 0.1)
    x = feature_matrix(stream, encode_user_columns(valid, spec), spec)
    device, device_note = fm.resolve_device(cfg.device)
    threads = cfg.threads if cfg.threads is not None else (1 if len(valid) < 200_000 else 0)
    params = fm.base_params(cfg.seed, threads, cfg.learning_rate, cfg.num_leaves, device, cfg.max_depth)
    say("training LightGBM", 0.3)
    selected, params, choice = _fit_best(cfg, params, x, y, split, spec, progress)
    booster, refit_info = selected, {"enabled": False, "rows": int(len(split.fit)),
                                     "rounds": int(selected.best_iteration)}
    if cfg.refit:
        say("refitting on fit + validation rows", 0.6)
        booster, refit_info = _refit(params, choice["imbalance"], x, y, split, spec, selected.best_iteration)

    def scores(rows: np.ndarray, b=booster) -> np.ndarray:
        return b.predict(x[rows], num_iteration=b.best_iteration or None)

    day = stream.t // 86400 if stream.t is not None else None
    amount = stream.cents / 100 if stream.cents is not None else None
    pick = lambda a, rows: None if a is None else a[rows]  # noqa: E731
    n_days = lambda rows: float(len(np.unique(day[rows]))) if day is not None else 1.0  # noqa: E731
    s_val, s_test = scores(split.val, selected), scores(split.test)  # validation: the pre-refit model
    mlp_info, mlp_net = None, None
    if cfg.mlp:
        say("training the MLP", 0.62)
        s_val, s_test, mlp_info, mlp_net = _blend_mlp(cfg, x, y, split, s_val, s_test)
        mlp_scale = mlp_info.pop("scale")
    threshold = _threshold(cfg, y[split.val], s_val, pick(amount, split.val), n_days(split.val))
    cost = dict(k=cfg.alert_budget, cost_missed=cfg.cost_missed_fraud, cost_review=cfg.cost_review)
    test = fraud_report(y[split.test], s_test, threshold, amount=pick(amount, split.test), day=pick(day, split.test),
                        card=pick(stream.customer, split.test), **cost)
    val = fraud_report(y[split.val], s_val, threshold, amount=pick(amount, split.val), day=pick(day, split.val),
                       card=pick(stream.customer, split.val), **cost)
    say("evaluating", 0.7)
    prequential = None
    if folds:
        reports = [test]
        for f in folds:
            b, _ = fm.fit(params, x[f.fit], y[f.fit], x[f.val], y[f.val], spec.names, spec.categorical_names,
                          cfg.max_rounds, cfg.early_stopping_rounds)
            if cfg.refit:  # the same procedure as the main model
                b, _ = _refit(params, choice["imbalance"], x, y, f, spec, b.best_iteration)
            s = b.predict(x[f.test], num_iteration=b.best_iteration or None)
            reports.append(fraud_report(y[f.test], s, threshold, day=pick(day, f.test),
                                        card=pick(stream.customer, f.test), **cost))
        prequential = summarise_folds(reports)
        prequential["test_periods"] = [split.bounds] + [f.bounds for f in folds]

    sample = split.test[:: max(1, len(split.test) // 5000)]
    contrib = np.abs(fm.contributions(booster, x[sample])[:, :-1]).mean(axis=0)
    gain = booster.feature_importance("gain")
    importance = sorted(({"feature": n, "readable": spec.readable(n), "mean_abs_shap": float(c), "gain": float(g)}
                         for n, c, g in zip(spec.names, contrib, gain)), key=lambda r: -r["mean_abs_shap"])
    built, missing = spec.built_and_missing()
    report = {
        "data": summary(df, v), "rows_used": int(len(valid)), "rows_left_out_invalid": int(v.n_invalid),
        "split": {"kind": split.kind, "description": split.description, "bounds": split.bounds,
                  "rows": {"fit": len(split.fit), "val": len(split.val), "test": len(split.test)}},
        "features_built": built, "features_not_built": missing, "device": device_note,
        "model_choice": choice, "rounds": refit_info["rounds"], "refit": refit_info, "validation": val, "test": test,
        "prequential": prequential, "mlp": mlp_info, "seconds": round(time.perf_counter() - started, 1),
    }
    eval_frame = pd.concat([pd.DataFrame({"split": name, "score": s, "label": y[rows],
                                          "amount": pick(amount, rows) if amount is not None else np.nan,
                                          "day": pick(day, rows) if day is not None else 0,
                                          "card": pick(stream.customer, rows) if stream.customer is not None else ""})
                            for name, rows, s in (("val", split.val, s_val), ("test", split.test, s_test))],
                           ignore_index=True)
    eval_frame["card"] = eval_frame["card"].astype("string")
    out = Path(cfg.out or f"runs/finance-{dt.datetime.now():%Y%m%d-%H%M%S}")
    headline = {"pr_auc": test["pr_auc"], "roc_auc": test["roc_auc"], "card_precision_at_k": test["card_precision_at_k"],
                "precision_at_threshold": test["precision_at_threshold"], "recall_at_threshold": test["recall_at_threshold"],
                "val_pr_auc": val["pr_auc"]}
    if prequential:
        headline.update({f"prequential_{k}_mean": prequential[k]["mean"] for k in ("pr_auc", "roc_auc")})
    say("profiling the training data for monitoring", 0.88)
    profile_started = time.perf_counter()
    # features: every training row; scores: the test period, the latest rows, out of sample for the shipped
    # (refit) model, which has trained on the validation rows (the pre-refit model's validation scores come from
    # another model, with another score distribution)
    profile = reference_profile(spec, x, valid, stream, split.test, s_test, seed=cfg.seed,
                                source=f"training data ({len(valid):,} rows; scores of the test period, "
                                       f"{len(split.test):,} rows)")
    trained_rows = np.r_[split.fit, split.val] if cfg.refit else split.fit  # the shipped model's training rows
    report["monitoring_profile"] = {"rows": profile.n_rows, "features": "training data",
                                    "scores": "test period", "score_rows": int(len(split.test)),
                                    "model_trained_on": ([int(stream.t[trained_rows].min()), int(stream.t[trained_rows].max())]
                                                         if stream.t is not None and len(trained_rows) else None),
                                    "seconds": round(time.perf_counter() - profile_started, 2)}
    say("writing the bundle", 0.9)
    with BundleWriter(out, domain="finance", task="binary", overwrite=cfg.overwrite,
                      label_names=["legitimate", "fraud"], preprocessing=spec.to_json(),
                      training_config=cfg.model_dump(mode="json"), metrics=headline,
                      data_fingerprint=fingerprint_data(df)) as w:
        w.save_text("model.txt", booster.model_to_string(num_iteration=booster.best_iteration or None))
        w.save_json("features.json", spec.to_json())
        w.save_json("threshold.json", {"threshold": threshold, "method": cfg.threshold, **cost,
                                       "val_days": n_days(split.val)})
        w.save_json("report.json", report)
        w.save_json("importance.json", importance)
        if mlp_info and mlp_info["used"]:
            w.save_torch("mlp.safetensors", mlp_net.state_dict())
            w.save_json("mlp.json", {"scale": mlp_scale, "weight_lightgbm": mlp_info["blend_weight_lightgbm"]})
        w.save_parquet("eval_scores.parquet", eval_frame)
        w.save_parquet("state.parquet", state_frame(stream, spec))
        profile.save(w.file("profile/profile.json").parent)
        w.save_json("profile/info.json", report["monitoring_profile"])
        with tempfile.TemporaryDirectory() as tmp:
            figs = {"pr_curve.png": plot_pr(y[split.test], s_test, threshold, title="Precision-recall (test)"),
                    "threshold.png": plot_threshold(threshold_sweep(y[split.val], s_val, pick(amount, split.val),
                                                                    n_days(split.val), cfg.cost_missed_fraud,
                                                                    cfg.cost_review), threshold),
                    "scores.png": plot_score_distribution(y[split.test], s_test, threshold)}
            for name, fig in figs.items():
                w.copy_file(save_figure(fig, Path(tmp) / name), f"plots/{name}")
    say("done", 1.0)
    return out
