"""Compiled scoring (lleaves): same scores as LightGBM, cached per machine, optional with a clear fallback."""
import warnings

import numpy as np
import pandas as pd
import pytest

from lepton_apps.cli import main
from lepton_apps.errors import ConfigError, DependencyError
from lepton_apps.finance import FraudConfig, FraudScorer, compiled, train
from lepton_apps.finance.demo import simulate_transactions

pytest.importorskip("lleaves", reason="compiled scoring needs the 'fast' extra (lleaves)")


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    """A demo-like model with few trees, so compiling it takes about a second."""
    df = simulate_transactions(150, 300, 30, seed=5)
    out = tmp_path_factory.mktemp("compiled") / "bundle"
    train(FraudConfig(data="simulated", out=str(out), test_days=5, delay_days=3, threads=1, max_rounds=40),
          frame=df)
    return out, df


def test_compiled_scores_equal_lightgbm_including_nan_and_invalid_rows(small_bundle):
    bundle, df = small_bundle
    plain = FraudScorer.load(bundle, compiled="no")
    fast = FraudScorer.load(bundle, compiled="yes")
    assert plain.scoring_engine == "LightGBM" and fast.scoring_engine == "compiled (lleaves)"
    x, _ = plain.features(df, use_state=False)
    x[::7, 3] = np.nan  # missing values take LightGBM's default direction in both engines
    x[5] = np.nan  # an invalid row stays NaN
    a, b = plain.predict_matrix(x), fast.predict_matrix(x)
    assert np.isnan(a[5]) and np.isnan(b[5])
    np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    # and one transaction at a time, through the online state
    tail = df.tail(50).to_dict("records")
    one_plain = [plain.score_one(r, update=False, reasons=0)["score"] for r in tail]
    one_fast = [fast.score_one(r, update=False, reasons=0)["score"] for r in tail]
    np.testing.assert_allclose(one_plain, one_fast, rtol=1e-12, atol=1e-12)


def test_categorical_model_compiles_to_the_same_scores(tmp_path):
    rng = np.random.default_rng(1)
    n = 2000
    y = (rng.random(n) < 0.15).astype(int)
    claims = pd.DataFrame({"severity": np.where(y == 1, rng.choice(["Major", "Total"], n),
                                                rng.choice(["Minor", "Trivial", "Major"], n)),
                           "claim": rng.gamma(2, 1000, n) * (1 + y), "fraud": y})
    claims.loc[::11, "severity"] = "?"
    path = tmp_path / "claims.csv"
    claims.to_csv(path, index=False)
    out = train(FraudConfig(data=str(path), out=str(tmp_path / "b"), columns={"amount": "claim", "label": "fraud"},
                            threads=1, max_rounds=30))
    plain, fast = FraudScorer.load(out, compiled="no"), FraudScorer.load(out, compiled="yes")
    probe = pd.DataFrame({"severity": ["Total", "Minor", "never seen", None, "Major"],
                          "claim": [9000.0, 100.0, 500.0, 2500.0, np.nan]})
    np.testing.assert_allclose(plain.score(probe)["score"], fast.score(probe)["score"], rtol=1e-12, atol=1e-12)


def test_compiled_library_is_cached_and_auto_uses_it(small_bundle, tmp_path, monkeypatch):
    bundle, _ = small_bundle
    monkeypatch.setenv("LEPTON_CACHE", str(tmp_path / "cache"))
    text = FraudScorer.load(bundle, compiled="no").bundle.read_text("model.txt")
    assert not compiled.is_cached(text)
    assert FraudScorer.load(bundle).compiled is None  # auto, nothing cached: LightGBM until a big batch
    first = FraudScorer.load(bundle, compiled="yes").compiled
    libs = list((tmp_path / "cache" / "finance-compiled").glob("*.so"))
    assert libs == [first.path] and compiled.is_cached(text)
    mtime = first.path.stat().st_mtime_ns
    again = FraudScorer.load(bundle)  # auto now finds the cached library and loads it
    assert again.scoring_engine == "compiled (lleaves)"
    assert again.compiled.path.stat().st_mtime_ns == mtime  # loaded, not compiled again
    assert FraudScorer.load(bundle, compiled="no").compiled is None


def test_auto_compiles_for_a_large_batch(small_bundle, tmp_path, monkeypatch):
    bundle, df = small_bundle
    monkeypatch.setenv("LEPTON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(compiled, "AUTO_COMPILE_ROWS", 1000)
    scorer = FraudScorer.load(bundle)
    scorer.score(df.head(500), reasons_for="none")
    assert scorer.compiled is None
    scorer.score(df.head(1500), reasons_for="none")
    assert scorer.scoring_engine == "compiled (lleaves)"


def test_without_lleaves_auto_falls_back_and_yes_explains(small_bundle, tmp_path, monkeypatch):
    bundle, df = small_bundle
    monkeypatch.setenv("LEPTON_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(compiled, "available", lambda: "lleaves is not usable (ImportError: No module named 'lleaves')")
    monkeypatch.setattr(compiled, "AUTO_COMPILE_ROWS", 10)
    with pytest.raises(DependencyError, match=r"pip install 'lepton-apps\[fast\]'"):
        FraudScorer.load(bundle, compiled="yes")
    scorer = FraudScorer.load(bundle)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scored = scorer.score(df.head(200), reasons_for="none")
    assert scored["score"].notna().all()
    assert scorer.compiled is None and "compiled scoring unavailable" in scorer.scoring_engine
    assert any("scoring with LightGBM instead" in str(w.message) for w in caught)
    with pytest.raises(ConfigError, match="compiled must be one of"):
        FraudScorer.load(bundle, compiled="maybe")


def test_cli_compile_then_score(small_bundle, tmp_path, monkeypatch, capsys):
    bundle, df = small_bundle
    monkeypatch.setenv("LEPTON_CACHE", str(tmp_path / "cache"))
    assert main(["finance", "compile", str(bundle)]) == 0
    assert "compiled" in capsys.readouterr().out
    src = tmp_path / "tx.csv"
    df.tail(300).to_csv(src, index=False)
    out = tmp_path / "scores.parquet"
    assert main(["finance", "score", str(bundle), str(src), "--out", str(out), "--compiled", "auto"]) == 0
    assert "with compiled (lleaves)" in capsys.readouterr().out
    ref = FraudScorer.load(bundle, compiled="no").score(df.tail(300).reset_index(drop=True), reasons_for="none")
    np.testing.assert_allclose(pd.read_parquet(out)["score"], ref["score"], rtol=1e-12, atol=1e-12)
