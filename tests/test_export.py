"""ONNX export folders (lepton_apps.export) and the finance export: same scores as LightGBM in a fresh
ONNX Runtime session, checksums that refuse a changed byte, a failed check that writes nothing."""
import json

import numpy as np
import pytest

pytest.importorskip("onnxruntime", reason="ONNX export needs onnxruntime (the 'fast' or 'test' extra)")
pytest.importorskip("onnxmltools", reason="the fraud model's ONNX export needs onnxmltools (the 'fast' or 'test' extra)")

from lepton_apps.cli import main  # noqa: E402
from lepton_apps.errors import BundleError  # noqa: E402
from lepton_apps.export import CARD, ExportError, load_export  # noqa: E402
from lepton_apps.finance import FraudConfig, FraudScorer, train  # noqa: E402
from lepton_apps.finance import export as fexport  # noqa: E402
from lepton_apps.finance.demo import simulate_transactions  # noqa: E402


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory):
    """A demo-like fraud model with few trees, trained from a frame (so its bundle points at no data file)."""
    df = simulate_transactions(150, 300, 30, seed=5)
    out = tmp_path_factory.mktemp("export") / "bundle"
    train(FraudConfig(data="simulated", out=str(out), test_days=5, delay_days=3, threads=1, max_rounds=40), frame=df)
    return out, df


def test_export_loads_in_a_fresh_session_and_scores_like_lightgbm(small_bundle, tmp_path):
    bundle, df = small_bundle
    path = fexport.export(bundle, tmp_path / "onnx", data=df.tail(2000))
    exported = load_export(path)
    card = exported.card
    scorer = FraudScorer.load(bundle, compiled="no")
    assert card["format"] == "onnx" and card["precision"] == "fp32"
    assert card["features"] == scorer.spec.names
    assert card["source"]["name"] == "bundle" and card["source"]["checksum"].startswith("sha256:")
    assert card["opset"]["ai.onnx.ml"] >= 1 and "onnxmltools" in card["producer"]
    assert [i["name"] for i in card["inputs"]] == ["input"] and card["inputs"][0]["shape"][1] == len(scorer.spec.names)
    check = card["check"]
    assert check["rows"] == 2000 and "rows of the table" in check["data"]
    assert check["tolerance"] == fexport.TOLERANCE and 0 <= check["max_abs_diff"] <= fexport.TOLERANCE
    assert set(card["files"]) == {"model.onnx"}
    # new rows, missing values included, scored in a fresh session from the folder alone
    x, _ = scorer.features(df, use_state=False)
    x[::5, 3] = np.nan
    onnx_scores = exported.session().run(["probabilities"], {"input": x.astype(np.float32)})[0][:, 1]
    np.testing.assert_allclose(onnx_scores, scorer.booster.predict(x), rtol=0, atol=fexport.TOLERANCE)


def test_without_validation_rows_the_card_says_it_used_the_synthetic_sample(small_bundle, tmp_path):
    bundle, _ = small_bundle
    card = load_export(fexport.export(bundle, tmp_path / "onnx")).card
    assert card["check"]["data"].startswith("synthetic sample") and card["check"]["rows"] == fexport.SAMPLE_ROWS
    assert card["check"]["max_abs_diff"] <= fexport.TOLERANCE


def test_export_checks_on_the_validation_split_when_the_training_data_is_at_hand(tmp_path):
    data = tmp_path / "tx.csv"
    df = simulate_transactions(100, 200, 25, seed=2)
    df.to_csv(data, index=False)
    bundle = train(FraudConfig(data=str(data), out=str(tmp_path / "b"), test_days=4, delay_days=3, threads=1,
                               max_rounds=20))
    val_rows = json.loads((bundle / "report.json").read_text())["split"]["rows"]["val"]
    check = load_export(fexport.export(bundle, tmp_path / "onnx")).card["check"]
    assert check["data"].startswith("the bundle's validation split") and check["rows"] == val_rows
    df.loc[0, "amount"] += 1.0  # other data at that path (its fingerprint differs): not the validation rows
    df.to_csv(data, index=False)
    assert load_export(fexport.export(bundle, tmp_path / "onnx2")).card["check"]["data"].startswith("synthetic")


def test_a_changed_byte_is_refused(small_bundle, tmp_path):
    bundle, _ = small_bundle
    path = fexport.export(bundle, tmp_path / "onnx")
    model = path / "model.onnx"
    raw = bytearray(model.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    model.write_bytes(bytes(raw))
    with pytest.raises(BundleError, match=r"'model\.onnx' does not match its sha256.*export the bundle again"):
        load_export(path)
    model.unlink()
    with pytest.raises(BundleError, match=rf"'model\.onnx' listed in {CARD} is missing"):
        load_export(path)


def test_an_export_that_fails_its_check_is_refused_with_numbers_and_writes_nothing(small_bundle, tmp_path,
                                                                                  monkeypatch):
    import lightgbm

    bundle, _ = small_bundle
    real = lightgbm.Booster.predict
    monkeypatch.setattr(lightgbm.Booster, "predict", lambda self, x, **kw: real(self, x, **kw) + 1e-3)
    with pytest.raises(ExportError, match=r"differ .* by up to 0\.001 .*tolerance 1e-05, on 5,000 rows") as err:
        fexport.export(bundle, tmp_path / "onnx")
    assert "nothing was written" in str(err.value)
    assert list(tmp_path.iterdir()) == []  # neither the folder nor its temporary twin


def test_int8_is_refused_for_trees(small_bundle, tmp_path):
    bundle, _ = small_bundle
    with pytest.raises(ExportError, match=r"--quantize int8 is not offered .*trees have no int8"):
        fexport.export(bundle, tmp_path / "onnx", quantize="int8")
    assert not (tmp_path / "onnx").exists()


def test_cli_export(small_bundle, tmp_path, capsys):
    bundle, _ = small_bundle
    out = tmp_path / "onnx"
    assert main(["finance", "export", str(bundle), "--format", "onnx", "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "max abs difference to LightGBM" in said and load_export(out).card["check"]["max_abs_diff"] <= 1e-5
    assert main(["finance", "export", str(bundle), "--out", str(out)]) == 2  # exists: not overwritten silently
    assert "already exists" in capsys.readouterr().err
    assert main(["finance", "export", str(bundle), "--out", str(tmp_path / "q"), "--quantize", "int8"]) == 2
    assert "not offered" in capsys.readouterr().err and not (tmp_path / "q").exists()


def _add_one_model():
    """A one-node ONNX graph, y = x + 1, standing in for another domain's network."""
    from onnx import TensorProto, helper, numpy_helper

    one = numpy_helper.from_array(np.ones((1, 3), np.float32), "one")
    graph = helper.make_graph([helper.make_node("Add", ["x", "one"], ["y"])], "add_one",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], [one])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def test_core_export_of_any_model_with_its_files(small_bundle, tmp_path):
    from lepton_apps.bundle import load_bundle
    from lepton_apps.export import write_export

    bundle, _ = small_bundle
    vocab = tmp_path / "vocab.txt"
    vocab.write_text("[PAD]\n[UNK]\nhello\n")
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    batched = lambda session: {"y": np.concatenate([session.run(["y"], {"x": x[i:i + 2]})[0]  # noqa: E731
                                                    for i in range(0, 4, 2)])}
    path = write_export(tmp_path / "out", model=_add_one_model(), source=load_bundle(bundle), precision="fp32",
                        inputs=batched, reference={"y": x + 1}, tolerance=0.0, check_data="four rows",
                        card={"preprocessing": {"tokenizer": "tokenizer/vocab.txt"}},
                        files={"tokenizer/vocab.txt": vocab})
    card = load_export(path).card
    assert set(card["files"]) == {"model.onnx", "tokenizer/vocab.txt"} and card["opset"] == {"ai.onnx": 17}
    assert card["preprocessing"]["tokenizer"] == "tokenizer/vocab.txt" and card["check"]["max_abs_diff"] == 0.0
    assert card["outputs"] == [{"name": "y", "shape": ["N", 3], "type": "tensor(float)"}]
    np.testing.assert_array_equal(load_export(path).session().run(["y"], {"x": x})[0], x + 1)
    (path / "tokenizer" / "vocab.txt").write_text("[PAD]\n[UNK]\nhellO\n")
    with pytest.raises(BundleError, match=r"'tokenizer/vocab\.txt' does not match its sha256 .*modified after export"):
        load_export(path)
    with pytest.raises(ExportError, match=r"by up to 0\.5 .*tolerance 0\.1, on 4 rows \(four rows\)"):
        write_export(tmp_path / "bad", model=_add_one_model(), source=load_bundle(bundle), precision="fp32",
                     inputs={"x": x}, reference={"y": x + 1.5}, tolerance=0.1, check_data="four rows")
    assert not (tmp_path / "bad").exists()
    with pytest.raises(ExportError, match="unknown precision 'fp16'"):
        write_export(tmp_path / "bad", model=_add_one_model(), source=load_bundle(bundle), precision="fp16",
                     inputs={"x": x}, reference={"y": x + 1}, tolerance=0.1, check_data="four rows")
