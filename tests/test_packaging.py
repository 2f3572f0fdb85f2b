"""Packaging: the wheel installs (non-editable) into a fresh venv and works from there."""
import os
import shutil
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

from conftest import ROOT

pytestmark = [pytest.mark.packaging, pytest.mark.slow]

REQUIRED = ["torch", "torchvision", "timm", "transformers", "sentence-transformers", "lightgbm", "scikit-learn",
            "streamlit", "pandas", "pyarrow", "safetensors", "pydantic", "pyyaml", "typer", "tqdm", "matplotlib"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    src = tmp_path_factory.mktemp("src") / "lepton-apps"  # build from a copy: no build/ left in the checkout
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(
        ".git", ".venv", "build", "dist", "*.egg-info", "lepton_models", "demo_data", "__pycache__", ".pytest_cache"))
    r = subprocess.run([sys.executable, "-m", "build", "--wheel", "--no-isolation", "--outdir", str(out), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    wheels = list(out.glob("lepton_apps-*.whl"))
    assert len(wheels) == 1
    return wheels[0]


def test_wheel_contents_and_metadata(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    for pkg in ("lepton_apps/cli.py", "lepton_apps/ui/hub.py", "lepton_apps/predictor.py", "lepton_apps/serve/app.py",
                "lepton_apps/medical/__init__.py",
                "lepton_apps/finance/__init__.py", "lepton_apps/support/__init__.py"):
        assert pkg in names, f"{pkg} missing from the wheel"
    assert not any(n.startswith(("tests/", "apps/", "bench/")) for n in names), "only the package belongs in the wheel"
    dist_info = next(n.split("/")[0] for n in names if n.endswith(".dist-info/METADATA"))
    meta = zipfile.ZipFile(wheel).read(f"{dist_info}/METADATA").decode()
    requires = {line.split(":", 1)[1].strip().split(";")[0].split(">")[0].split("=")[0].split("<")[0].strip().lower()
                for line in meta.splitlines() if line.startswith("Requires-Dist:") and "extra ==" not in line}
    assert set(REQUIRED) <= requires, f"missing runtime dependencies: {set(REQUIRED) - requires}"
    assert "Requires-Python: >=3.10" in meta
    eps = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "lepton-apps = lepton_apps.cli:main" in eps
    for d in ("medical", "finance", "support"):
        assert f"{d} = lepton_apps.{d}:DOMAIN" in eps


def test_wheel_installs_into_fresh_venv_and_runs(wheel, tmp_path):
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    py = env_dir / "bin" / "python"
    site = Path(subprocess.check_output([str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
                                        text=True).strip())
    # The third-party dependencies come from the dev environment (no 6 GB re-install of torch), through a folder
    # of links that leaves out everything of lepton-apps itself, so only the wheel can provide it.
    deps = tmp_path / "deps"
    deps.mkdir()
    dev_site = Path(next(p for p in sys.path if p.endswith("site-packages")))
    for entry in dev_site.iterdir():
        if "lepton" in entry.name.lower() or entry.suffix == ".pth":
            continue
        (deps / entry.name).symlink_to(entry)
    (site / "zz_dev_deps.pth").write_text(str(deps) + "\n")

    r = subprocess.run([str(py), "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    check = ("import lepton_apps, lepton_apps.medical, lepton_apps.finance, lepton_apps.support, importlib.metadata as m;"
             "from lepton_apps.domains import available_domains;"
             "print(lepton_apps.__file__); print(sorted(available_domains()));"
             "print(m.distribution('lepton-apps').locate_file(''))")
    out = subprocess.run([str(py), "-c", check], cwd=tmp_path, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = out.stdout.splitlines()
    assert lines[0].startswith(str(site)), f"imported from {lines[0]}, not from the installed wheel"
    assert lines[1] == "['finance', 'medical', 'support']"
    help_out = subprocess.run([str(env_dir / "bin" / "lepton-apps"), "--help"], cwd=tmp_path, capture_output=True,
                              text=True, env=env, timeout=120)
    assert help_out.returncode == 0, help_out.stderr[-2000:]
    for verb in ("models", "demo", "ui", "serve", "medical", "finance", "support"):
        assert verb in help_out.stdout
