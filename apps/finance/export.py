"""Export a fraud bundle's LightGBM model to ONNX (``onnxmltools``), checked against LightGBM.

The exported graph takes the model's feature matrix (float32, one column per feature of the card's
``features`` list, in that order; NaN = missing) and gives ``label`` and ``probabilities`` (column 1
is P(fraud), the bundle's score). Feature building stays outside the graph: it needs each card's and
terminal's history (see :mod:`features`), which an inference server keeps elsewhere.

The check compares ONNX Runtime's P(fraud) with LightGBM's on rows of, in this order of preference:
a table the caller passes (``data``); the bundle's validation split, rebuilt from its training data when
that file is still at the recorded path and has the recorded fingerprint (bundles keep scores, not
feature rows); otherwise a documented synthetic sample (:func:`threshold_sample`). The card says which.

ONNX's tree operator compares float32 values with float32 thresholds, so scores differ from
LightGBM's (float64) by float rounding: measured 5e-7 at most on the demo bundle; the tolerance,
1e-5, leaves room for bigger models while still catching a branch taken the other way (a value
within float32 rounding of a split threshold), which moves a score by far more.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from lepton_apps.errors import DataError, require
from lepton_apps.export import ExportError, write_export

#: max abs difference in P(fraud) allowed between the ONNX model and LightGBM (see the module docstring)
TOLERANCE = 1e-5
#: rows checked at most (a seeded sample beyond)
CHECK_ROWS = 50_000
SAMPLE_ROWS = 5_000
INPUT_NAME = "input"


def convert(booster) -> Any:
    """Return the ``onnx.ModelProto`` of a LightGBM binary booster (float32 input, dynamic batch size)."""
    onnxmltools = require("onnxmltools", feature="ONNX export of the fraud model", extra="fast")
    from onnxmltools.convert.common.data_types import FloatTensorType

    model = onnxmltools.convert_lightgbm(booster, name="lepton-finance",
                                         initial_types=[(INPUT_NAME, FloatTensorType([None, booster.num_feature()]))],
                                         zipmap=False)
    for out in model.graph.output:  # the converter declares `label` as shape [1]; it has one value per row
        dims = out.type.tensor_type.shape.dim
        if len(dims):
            dims[0].dim_param = "N"
    return model


def threshold_sample(booster, rows: int = SAMPLE_ROWS, seed: int = 0, missing_rate: float = 0.05) -> np.ndarray:
    """Return ``rows`` synthetic feature rows: each feature drawn independently among the midpoints between
    the model's consecutive split thresholds on it (and one value beyond each end), NaN at ``missing_rate``.

    Every region of every tree split gets visited, and no value lies near a threshold (where float32
    rounding could flip a branch, which real data with its 2-decimal amounts and counts does not hit).
    """
    trees = booster.trees_to_dataframe()
    splits = trees[trees["split_feature"].notna()]
    rng = np.random.default_rng(seed)
    names = booster.feature_name()
    x = np.empty((rows, len(names)))
    for j, name in enumerate(names):
        mine = splits[splits["split_feature"] == name]
        cat = mine[mine["decision_type"] == "=="]["threshold"].astype(str)
        if len(cat):  # categorical: the category codes the splits name, and one they do not
            codes = np.unique([int(float(c)) for t in cat for c in t.split("||") if c])
            x[:, j] = rng.choice(np.r_[codes, codes.max() + 1], size=rows)
            continue
        th = np.unique(pd.to_numeric(mine["threshold"], errors="coerce").dropna().to_numpy(dtype=float))
        if th.size == 0:
            x[:, j] = rng.normal(size=rows)
            continue
        gap = max(1.0, float(np.ptp(th)))
        points = np.r_[th[0] - gap, (th[:-1] + th[1:]) / 2, th[-1] + gap]
        x[:, j] = rng.choice(points, size=rows)
    x[rng.random(x.shape) < missing_rate] = np.nan
    return x


def _validation_rows(scorer) -> tuple[np.ndarray, str] | None:
    """Return (feature rows of the bundle's validation split, description), or None when its training data
    is not at the recorded path or is not the same data (fingerprint)."""
    from lepton_apps.bundle import fingerprint_data

    from .config import FraudConfig
    from .data import read_table
    from .features import encode_user_columns, feature_matrix
    from .training import choose_split, prepare

    bundle = scorer.bundle
    cfg_data = bundle.training_config.get("data")
    if not cfg_data or not Path(cfg_data).is_file():
        return None
    cfg = FraudConfig.from_dict(bundle.training_config)
    df = read_table(cfg.data, cfg.columns.missing_values)
    if fingerprint_data(df) != bundle.metadata.get("data_fingerprint"):
        return None
    _, valid, stream = prepare(df, cfg)
    split, _ = choose_split(cfg, stream, stream.label.astype(int))
    x = feature_matrix(stream, encode_user_columns(valid, scorer.spec), scorer.spec)[split.val]
    return x, f"the bundle's validation split, rebuilt from its training data {cfg.data} ({len(x):,} rows)"


def check_rows(scorer, data: str | Path | pd.DataFrame | None = None, seed: int = 0) -> tuple[np.ndarray, str]:
    """Return (feature rows to check the export on, a description of them for the card); see the module docstring."""
    if data is not None:
        frame = data
        if not isinstance(frame, pd.DataFrame):
            from .data import read_table

            frame = read_table(data, id_column=scorer.spec.roles.get("id"))
        x, errors = scorer.features(frame)
        x = x[errors.isna().to_numpy()]
        if len(x) == 0:
            raise DataError("no row of the table can be scored, so the export cannot be checked on it",
                            where=str(data) if not isinstance(data, pd.DataFrame) else "data",
                            fix="pass transactions with the model's columns (see 'lepton-apps finance check')")
        source = f"rows of {data}" if not isinstance(data, pd.DataFrame) else "rows of the table passed in"
        how = f"{source} ({len(x):,} scorable rows)"
    else:
        found = _validation_rows(scorer)
        if found is not None:
            x, how = found
        else:
            x = threshold_sample(scorer.booster, seed=seed)
            how = (f"synthetic sample ({len(x):,} rows, seed {seed}): the bundle keeps no validation rows and its "
                   "training data is not at the recorded path, so each feature is drawn among the midpoints "
                   "between the model's split thresholds, 5% missing; pass --data TABLE to check on real rows")
    if len(x) > CHECK_ROWS:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), CHECK_ROWS, replace=False))]
        how += f"; a seeded sample of {CHECK_ROWS:,} of them"
    return x, how


def export(bundle: str | Path, out: str | Path, *, quantize: str | None = None, data: Any = None,
           tolerance: float = TOLERANCE, overwrite: bool = False) -> Path:
    """Export a fraud bundle's LightGBM model to an ONNX export folder; return its path.

    Raises ExportError for ``quantize="int8"`` (tree ensembles have no int8 form worth having: their
    work is comparisons, not multiplications) and when the ONNX scores differ from LightGBM's by more
    than ``tolerance``; DataError / BundleError for a bad table or bundle.
    """
    from .predict import FraudScorer

    if quantize not in (None, "none", "fp32"):
        raise ExportError(f"--quantize {quantize} is not offered for the fraud model",
                          where="finance export",
                          fix="export without --quantize: the LightGBM trees are exported in fp32 (trees have no "
                              "int8 kernels — scoring is threshold comparisons, not matrix products; for speed "
                              "use 'lepton-apps finance compile')")
    scorer = FraudScorer.load(bundle, compiled="no")
    if scorer.mlp is not None:
        raise ExportError("this bundle blends an MLP into the LightGBM score, and the export holds the trees only",
                          where=str(scorer.bundle.path),
                          fix="export a bundle trained without --mlp (or with an MLP that was not blended in)")
    booster = scorer.booster
    x, how = check_rows(scorer, data)
    reference = booster.predict(x)
    spec = scorer.spec
    card = {"task": "binary", "label_names": scorer.bundle.label_names,
            "features": list(spec.names), "features_in_model": list(booster.feature_name()),
            "features_readable": [spec.readable(n) for n in spec.names],
            "preprocessing": {"input": f"float32 matrix [rows, {booster.num_feature()}], columns in 'features' order, "
                                       "NaN = missing; built by lepton_apps.finance (FraudScorer.features)",
                              "categorical_codes": spec.categorical, "feature_spec": spec.to_json()},
            "score_output": "probabilities[:, 1] = P(fraud)",
            "threshold": scorer.threshold_info,
            "converter": "onnxmltools.convert_lightgbm"}
    return write_export(out, model=convert(booster), source=scorer.bundle, precision="fp32",
                        inputs={INPUT_NAME: x.astype(np.float32)}, reference={"probabilities": reference},
                        check_outputs=lambda outs: {"probabilities": outs["probabilities"][:, 1]},
                        tolerance=tolerance, check_data=how, card=card, overwrite=overwrite)
