"""The `lepton-apps` command: help everywhere, one-line errors, demo orchestration."""
import subprocess
import sys
import types

import pytest
import typer

from conftest import PYTHON, ROOT
from lepton_apps import cli
from lepton_apps.bundle import BundleWriter
from lepton_apps.domains import DomainSpec
from lepton_apps.errors import DataError


def _verbs(typer_app):
    group = typer.main.get_command(typer_app)
    return group, sorted(group.commands)


def test_every_verb_has_help_with_an_example(capsys):
    cli._mount_domains()
    group, verbs = _verbs(cli.app)
    assert {"models", "demo", "ui", "medical", "finance", "support"} <= set(verbs)
    for name in ("demo", "ui"):
        assert "Example: lepton-apps" in group.commands[name].help
    for name, cmd in _verbs(cli.models_app)[0].commands.items():
        assert "Example: lepton-apps models" in cmd.help, name
    assert cli.main(["models", "list", "--help"]) == 0
    assert "Example: lepton-apps models list" in capsys.readouterr().out


def test_console_script_runs_and_errors_are_one_line(tmp_path):
    ok = subprocess.run([PYTHON, "-m", "lepton_apps.cli", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "medical" in ok.stdout
    bad = subprocess.run([PYTHON, "-m", "lepton_apps.cli", "models", "show", str(tmp_path / "missing")], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "Traceback" not in bad.stderr
    assert "no model named" in bad.stderr and "Fix:" in bad.stderr


def test_unexpected_errors_point_to_debug(monkeypatch, capsys):
    def boom(*a, **k):
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("lepton_apps.registry.Registry.list", boom)
    assert cli.main(["models", "list"]) == 1
    err = capsys.readouterr().err
    assert "unexpected RuntimeError: disk on fire" in err and "--debug" in err


def test_demo_builds_each_registered_domain_once(tmp_path, monkeypatch, capsys):
    calls = []

    def build(workdir, registry):
        calls.append(workdir)
        with BundleWriter(tmp_path / "built", domain="medical", task="binary", overwrite=True) as w:
            w.save_json("a.json", {"n": len(calls)})
        return registry.register(tmp_path / "built", f"medical-demo-{len(calls)}").name

    def failing(workdir, registry):
        raise DataError("demo data could not be written", where=str(workdir), fix="free some disk space")

    builders = types.ModuleType("_lepton_test_demo_builders")  # build_demo is a "module:function" reference
    builders.build, builders.failing = build, failing
    monkeypatch.setitem(sys.modules, builders.__name__, builders)
    specs = {"medical": DomainSpec("medical", "Medical", "x", build_demo=f"{builders.__name__}:build"),
             "finance": DomainSpec("finance", "Fraud", "y", build_demo=None),
             "support": DomainSpec("support", "Support", "z", build_demo=f"{builders.__name__}:failing")}
    monkeypatch.setattr(cli, "available_domains", lambda: specs)
    assert cli.main(["demo", "--workdir", str(tmp_path / "d"), "--domain", "medical"]) == 0
    assert calls == [tmp_path / "d" / "medical"]
    out = capsys.readouterr().out
    assert "registered medical-demo-1" in out and "1 model(s) built" in out
    assert cli.main(["demo", "--workdir", str(tmp_path / "d"), "--domain", "medical"]) == 0
    assert len(calls) == 1 and "already registered" in capsys.readouterr().out  # idempotent
    assert cli.main(["demo", "--workdir", str(tmp_path / "d"), "--domain", "medical", "--force"]) == 0
    assert len(calls) == 2
    assert cli.main(["demo", "--domain", "nope"]) == 2
    assert "unknown domain(s): nope" in capsys.readouterr().err
    assert cli.main(["demo", "--workdir", str(tmp_path / "d")]) == 2
    captured = capsys.readouterr()
    assert "[finance] no demo yet" in captured.out
    assert "demo data could not be written" in captured.err and "free some disk space" in captured.err
