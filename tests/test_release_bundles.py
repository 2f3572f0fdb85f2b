"""Bundles built by the previous release (tests/fixtures/release_bundles/, made by make_release_bundles.py at the
commit in its RELEASE file) load with this code and answer what they answered then: same labels, decisions,
hand-offs and FAQ ids, the same scores and probabilities (to 1e-5)."""
import json
import math
from pathlib import Path

import pytest

FIXTURES = Path(__file__).parent / "fixtures" / "release_bundles"
IGNORED = {"model_version"}     # names the backend and bundle version, which is what the loader chose


def same(old, new, where: str, tol: float = 1e-5, ignored=IGNORED) -> list[str]:
    """Return the differences between two JSON values (floats within ``tol``; keys in ``ignored`` skipped)."""
    if isinstance(old, dict) and isinstance(new, dict):
        out = [f"{where}.{k}: missing now" for k in old.keys() - new.keys()]
        return out + [d for k in old.keys() & new.keys() if k not in ignored
                      for d in same(old[k], new[k], f"{where}.{k}", tol, ignored)]
    if isinstance(old, list) and isinstance(new, list):
        if len(old) != len(new):
            return [f"{where}: {len(old)} items then, {len(new)} now"]
        return [d for i, (a, b) in enumerate(zip(old, new)) for d in same(a, b, f"{where}[{i}]", tol, ignored)]
    if isinstance(old, float) or isinstance(new, float):
        if old is None or new is None or not (math.isclose(old, new, abs_tol=tol) or (old != old and new != new)):
            return [f"{where}: {old!r} then, {new!r} now"]
        return []
    return [] if old == new else [f"{where}: {old!r} then, {new!r} now"]


def test_the_comparison_catches_a_changed_field():
    assert same({"a": 1.0, "b": ["x"]}, {"a": 1.0 + 1e-7, "b": ["x"]}, "r") == []
    assert sorted(same({"a": 1.0, "b": ["x"]}, {"a": 1.1, "b": ["y"]}, "r")) == ["r.a: 1.0 then, 1.1 now",
                                                                             "r.b[0]: 'x' then, 'y' now"]
    assert same({"a": 1}, {}, "r") == ["r.a: missing now"]


@pytest.mark.parametrize("domain", ["medical", "finance", "support"])
def test_a_bundle_of_the_previous_release_loads_and_answers_the_same(domain):
    import lepton_apps.predictor as predictor

    folder = FIXTURES / domain
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    kwargs = {"backend": "torch"} if domain != "finance" else {}
    model = predictor.load(folder / "bundle", device="cpu", **kwargs)
    items = expected["items"]
    if domain == "medical":
        items = [str(folder / name) for name in items]
    results = [r.model_dump(mode="json") for r in model.predict(items)]
    # a medical result's item is the image's path, which was the build machine's
    ignored = IGNORED | {"item"} if domain == "medical" else IGNORED
    assert same(expected["results"], results, domain, ignored=ignored) == []
