"""`lepton-apps monitor drift / profile` on a fraud bundle: the profile written at training, a batch file like
the training data, a shifted one (exit 1 with the reasons), and a profile written later for an older bundle."""
import json
import shutil

from lepton_apps.cli import main
from test_finance_pipeline import fraud_bundle, fraud_data  # noqa: F401 - fixtures


def test_drift_of_a_batch_file_against_the_bundle_profile(fraud_bundle, fraud_data, tmp_path, capsys):  # noqa: F811
    _, new = fraud_data
    same, shifted = tmp_path / "same.parquet", tmp_path / "shifted.parquet"
    new.to_parquet(same)
    moved = new.copy()
    moved["amount"] = moved["amount"] * 5
    moved.to_parquet(shifted)
    capsys.readouterr()
    assert main(["monitor", "drift", str(fraud_bundle), str(same), "--out", str(tmp_path / "same.json")]) == 0
    assert json.loads((tmp_path / "same.json").read_text())["status"] in ("ok", "warn")
    assert main(["monitor", "drift", str(fraud_bundle), str(shifted), "--out", str(tmp_path / "moved.json")]) == 1
    out = capsys.readouterr().out
    assert "overall: drift" in out and any(line.startswith("amount:") and "(drift)" in line for line in out.splitlines())
    assert json.loads((tmp_path / "moved.json").read_text())["status"] == "drift"
    assert main(["monitor", "drift", str(fraud_bundle), str(shifted), "--fail-on", "never"]) == 0
    assert main(["monitor", "drift", str(fraud_bundle), str(shifted), "--fail-on", "maybe"]) == 2
    assert main(["monitor", "profile", str(fraud_bundle), str(same)]) == 2
    assert "already carries the profile" in capsys.readouterr().err


def test_an_older_bundle_gets_its_profile_from_validation_data(fraud_bundle, fraud_data, tmp_path, capsys):  # noqa: F811
    _, new = fraud_data
    old = tmp_path / "old_bundle"
    shutil.copytree(fraud_bundle, old)
    shutil.rmtree(old / "profile")
    meta = json.loads((old / "bundle.json").read_text())
    meta["files"] = {k: v for k, v in meta["files"].items() if not k.startswith("profile/")}
    (old / "bundle.json").write_text(json.dumps(meta))
    data = tmp_path / "new.parquet"
    new.to_parquet(data)
    assert main(["monitor", "drift", str(old), str(data)]) == 2
    assert "has no reference profile" in capsys.readouterr().err
    assert main(["monitor", "profile", str(old), str(data)]) == 0
    assert "profile of" in capsys.readouterr().out
    assert main(["monitor", "drift", str(old), str(data)]) == 0  # the same data as its reference
    assert "overall: ok" in capsys.readouterr().out

