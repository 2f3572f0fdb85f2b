"""Layering: the core imports no domain package, and no domain imports another."""
import ast
from pathlib import Path

import pytest

from conftest import ROOT

DOMAINS = ("medical", "finance", "support")


def imported_modules(source: str, package: str) -> set[str]:
    """Return absolute module names imported by ``source`` (relative imports resolved against ``package``)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == "import_module":
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return found


def forbidden_for(owner: str | None) -> tuple[str, ...]:
    """Domain packages that ``owner`` (None = the core) must not import."""
    return tuple(f"lepton_apps.{d}" for d in DOMAINS if d != owner)


def violations(files: list[Path], owner: str | None, package_of) -> list[str]:
    bad = []
    for f in files:
        for mod in imported_modules(f.read_text(encoding="utf-8"), package_of(f)):
            if any(mod == p or mod.startswith(p + ".") for p in forbidden_for(owner)):
                bad.append(f"{f.relative_to(ROOT)} imports {mod}")
    return bad


def test_checker_catches_forbidden_imports():
    src = "import lepton_apps.finance\nfrom lepton_apps.support.data import x\nfrom ..medical import y\n"
    mods = imported_modules(src, "lepton_apps.ui")
    assert {"lepton_apps.finance", "lepton_apps.support.data", "lepton_apps.medical"} <= mods
    assert imported_modules("from . import data", "lepton_apps.medical") >= {"lepton_apps.medical.data"}


def test_core_imports_no_domain():
    files = sorted((ROOT / "lepton_apps").rglob("*.py"))
    assert len(files) >= 8
    pkg = lambda f: ".".join(("lepton_apps",) + f.relative_to(ROOT / "lepton_apps").parent.parts)  # noqa: E731
    assert violations(files, None, pkg) == []


@pytest.mark.parametrize("domain", DOMAINS)
def test_domain_imports_no_other_domain(domain):
    files = sorted((ROOT / "apps" / domain).rglob("*.py"))
    assert files, f"apps/{domain} has no Python files"
    pkg = lambda f: ".".join(("lepton_apps", domain) + f.relative_to(ROOT / "apps" / domain).parent.parts)  # noqa: E731
    assert violations(files, domain, pkg) == []


@pytest.mark.parametrize("domain,names", [
    ("medical", ("MedicalClassifier", "MedicalConfig")),
    ("finance", ("FraudScorer", "FraudConfig")),
    ("support", ("SupportAssistant", "SupportConfig")),
])
def test_domains_share_one_api_shape(domain, names):
    """`from lepton_apps.<domain> import <Predictor>, train, <Config>` works, and `train` stays the function
    even after the submodule train.py has been imported (Python would otherwise replace it)."""
    import importlib
    import inspect

    pkg = importlib.import_module(f"lepton_apps.{domain}")
    importlib.import_module(f"lepton_apps.{domain}.train")
    assert inspect.isfunction(pkg.train), f"lepton_apps.{domain}.train is {pkg.train!r}, not the train function"
    predictor, config = (getattr(pkg, n) for n in names)
    assert callable(getattr(predictor, "load")), f"{names[0]} has no load()"
    assert hasattr(config, "from_yaml"), f"{names[1]} is not a LeptonConfig"
