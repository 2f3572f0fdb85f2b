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
    from training.py even after that submodule has been imported."""
    import importlib
    import inspect

    pkg = importlib.import_module(f"lepton_apps.{domain}")
    training = importlib.import_module(f"lepton_apps.{domain}.training")
    assert inspect.isfunction(pkg.train), f"lepton_apps.{domain}.train is {pkg.train!r}, not the train function"
    assert pkg.train is training.train and pkg.training is training
    assert pkg.build_demo is importlib.import_module(f"lepton_apps.{domain}.demo").build_demo
    predictor, config = (getattr(pkg, n) for n in names)
    assert callable(getattr(predictor, "load")), f"{names[0]} has no load()"
    assert hasattr(config, "from_yaml"), f"{names[1]} is not a LeptonConfig"
    assert config.__module__ == f"lepton_apps.{domain}.config", f"{names[1]} lives in {config.__module__}"


@pytest.mark.parametrize("domain", DOMAINS)
def test_importing_a_domain_package_stays_light(domain):
    """`import lepton_apps.<domain>` (the CLI, the hub, entry-point discovery) loads no torch, LightGBM or
    transformers; `train` and the predictor load on first use."""
    import subprocess
    import sys

    heavy = ("torch", "lightgbm", "transformers")
    code = (f"import sys, lepton_apps.{domain} as p; p.DOMAIN.build_demo and p.DOMAIN.predictor; "
            f"print(sorted({{m.split('.')[0] for m in sys.modules}} & set({heavy!r})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", f"import lepton_apps.{domain} loaded {out.stdout.strip()}"


@pytest.mark.parametrize("domain,predictor", [
    ("medical", "MedicalClassifier"), ("finance", "FraudScorer"), ("support", "SupportAssistant")])
def test_domain_spec_resolves_its_demo_builder_and_predictor(domain, predictor):
    import importlib

    from lepton_apps.domains import available_domains

    spec = available_domains()[domain]
    assert isinstance(spec.build_demo, str) and isinstance(spec.predictor, str)
    assert spec.demo_builder() is importlib.import_module(f"lepton_apps.{domain}.demo").build_demo
    cls = spec.predictor_class()
    assert cls is getattr(importlib.import_module(f"lepton_apps.{domain}.predict"), predictor)
    assert cls is getattr(importlib.import_module(f"lepton_apps.{domain}"), predictor)


def test_domain_spec_without_references_resolves_to_none():
    from lepton_apps.domains import DomainSpec

    spec = DomainSpec("later", "Later", "no demo, no predictor yet")
    assert spec.demo_builder() is None and spec.predictor_class() is None


@pytest.mark.parametrize("field,ref,message", [
    ("build_demo", "lepton_apps.medical.demo.build_demo", "malformed reference"),
    ("build_demo", "lepton_apps.medical.no_such_module:build_demo", "cannot import 'lepton_apps.medical.no_such_module'"),
    ("predictor", "lepton_apps.medical.predict:NoSuchClassifier", "has no 'NoSuchClassifier'"),
    ("predictor", ":MedicalClassifier", "malformed reference"),
])
def test_domain_spec_with_a_bad_reference_raises_a_clear_error(field, ref, message):
    from lepton_apps.domains import DomainSpec
    from lepton_apps.errors import LeptonError

    spec = DomainSpec("broken", "Broken", "x", **{field: ref})
    resolve = spec.demo_builder if field == "build_demo" else spec.predictor_class
    with pytest.raises(LeptonError) as err:
        resolve()
    text = str(err.value)
    assert message in text and repr(ref) in text and f"DomainSpec('broken').{field}" in text
    assert err.value.fix, text


def test_a_missing_dependency_is_told_apart_from_a_wrong_module_path(tmp_path, monkeypatch):
    """A module that exists but fails on one of its own imports gets an 'install' fix, not 'correct the path'."""
    from lepton_apps.domains import DomainSpec
    from lepton_apps.errors import LeptonError

    (tmp_path / "_lepton_needs_missing_lib.py").write_text("import _lepton_surely_missing_lib\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = DomainSpec("x", "X", "x", build_demo="_lepton_needs_missing_lib:build")
    with pytest.raises(LeptonError, match="_lepton_surely_missing_lib") as err:
        spec.demo_builder()
    assert err.value.fix.startswith("install"), err.value.fix
    wrong = DomainSpec("x", "X", "x", build_demo="_lepton_no_such_module:build")
    with pytest.raises(LeptonError) as err:
        wrong.demo_builder()
    assert err.value.fix.startswith("correct the module path"), err.value.fix


# --------------------------------------------------------------------------- the module graph: no circles, stages
# The layout (README.md, "Rooms of a domain"): each domain's rooms in stages, lowest first. A room imports only rooms of
# its own stage or of a lower one, and no import circle exists anywhere (computed below from the modules' own
# imports, those inside functions included). A new room must be given its stage here and in the design notes.
STAGES = ("config", "data", "features", "model", "evaluate", "monitoring", "predict", "training", "export", "tools",
          "interface")
ROOMS = {
    "medical": {"config": "config", "data": "data", "imageio": "data", "patients": "data", "pixelcache": "data",
                "augment": "features", "stream": "features", "model": "model", "evaluate": "evaluate",
                "monitoring": "monitoring", "predict": "predict", "training": "training", "export": "export",
                "demo": "tools", "check": "tools", "deid": "tools", "cli": "interface", "page": "interface"},
    "finance": {"config": "config", "data": "data", "split": "data", "features": "features", "state": "features", "online": "features",
                "model": "model", "mlp": "model", "compiled": "model", "reasons": "model", "evaluate": "evaluate",
                "monitoring": "monitoring", "predict": "predict", "training": "training", "export": "export",
                "demo": "tools", "cli": "interface", "page": "interface"},
    "support": {"config": "config", "data": "data", "text": "data", "multilingual": "features",
                "encoder": "features", "index": "features", "model": "model", "finetune": "model", "distance": "model",
                "reranker": "model", "calibration": "model", "evaluate": "evaluate", "monitoring": "monitoring",
                "predict": "predict", "training": "training", "export": "export", "demo": "tools",
                "review": "tools", "feedback": "tools", "cli": "interface", "page": "interface",
                "page_texts": "interface"},
}


def package_modules() -> dict[str, Path]:
    """{module name: file} of the core (lepton_apps/) and the domains (apps/<d>/ installed as lepton_apps.<d>)."""
    found = {}
    roots = [(ROOT / "lepton_apps", "lepton_apps")] + [(ROOT / "apps" / d, f"lepton_apps.{d}") for d in DOMAINS]
    for base, prefix in roots:
        for f in sorted(base.rglob("*.py")):
            parts = [p for p in f.relative_to(base).with_suffix("").parts if p != "__init__"]
            found[".".join([prefix, *parts])] = f
    return found


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """{module: the package modules it imports}; ``from pkg import name`` counts as importing ``pkg.name`` when
    that is a module, else ``pkg``."""
    graph = {}
    for name, f in modules.items():
        package = name if f.name == "__init__.py" else name.rpartition(".")[0]
        targets = set()
        for mod in imported_modules(f.read_text(encoding="utf-8"), package):
            while mod and mod not in modules:
                mod = mod.rpartition(".")[0]
            if mod and mod != name:
                targets.add(mod)
        graph[name] = {t for t in targets if not name.startswith(t + ".")}   # a module's own packages: not edges
    return graph


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Return the strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph.get(root, ()))))]
        index[root] = low[root] = counter[0]; counter[0] += 1; stack.append(root); on.add(root)  # noqa: E702
        while work:
            v, it = work[-1]
            w = next(it, None)
            if w is not None:
                if w not in index:
                    index[w] = low[w] = counter[0]; counter[0] += 1; stack.append(w); on.add(w)  # noqa: E702
                    work.append((w, iter(sorted(graph.get(w, ())))))
                elif w in on:
                    low[v] = min(low[v], index[w])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[v])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop(); on.discard(w); comp.append(w)  # noqa: E702
                    if w == v:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def test_the_cycle_finder_finds_a_planted_circle_and_nothing_else():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert import_circles(graph) == [["a", "b", "c"]]
    assert import_circles({"a": {"b"}, "b": set()}) == []


def test_no_import_circle_anywhere_in_the_package():
    graph = import_graph(package_modules())
    assert len(graph) > 80
    assert import_circles(graph) == [], "import circles (each a list of modules that import each other)"


@pytest.mark.parametrize("domain", DOMAINS)
def test_every_room_has_a_stage_and_imports_only_its_own_or_lower_stages(domain):
    modules = package_modules()
    prefix = f"lepton_apps.{domain}."
    rooms = {m[len(prefix):] for m in modules if m.startswith(prefix)}
    assert rooms == set(ROOMS[domain]), ("rooms without a stage (add them to ROOMS and the design notes' table): "
                                         f"{sorted(rooms - set(ROOMS[domain]))}; gone: {sorted(set(ROOMS[domain]) - rooms)}")
    graph = import_graph(modules)
    upward = []
    for room, stage in ROOMS[domain].items():
        for target in graph[prefix + room]:
            other = target[len(prefix):]
            if target.startswith(prefix) and STAGES.index(ROOMS[domain][other]) > STAGES.index(stage):
                upward.append(f"{room} ({stage}) imports {other} ({ROOMS[domain][other]})")
    assert upward == []


def test_the_shared_rooms_exist_in_every_domain():
    shared = set.intersection(*(set(r) for r in ROOMS.values()))
    assert shared >= {"config", "data", "model", "evaluate", "monitoring", "predict", "training", "export", "demo",
                      "cli", "page"}
