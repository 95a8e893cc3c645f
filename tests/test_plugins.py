"""Plugins: a real installed distribution with an entry point, files, env var, failures."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from proxmf_bench.cli import main
from proxmf_bench.errors import PluginError
from proxmf_bench.plugin.registry import ENV_PLUGINS, load_registry

PLUGINS = Path(__file__).parent / "plugins"
BAD = str(PLUGINS / "bad_things.py")
BROKEN = str(PLUGINS / "broken_import.py")
DUPLICATE = str(PLUGINS / "duplicate_mu.py")


@pytest.fixture(scope="module")
def tiny_site(tmp_path_factory):
    """pip-install the tiny plugin distribution into its own directory (a real wheel build)."""
    work = tmp_path_factory.mktemp("tiny")
    source = work / "src"
    shutil.copytree(PLUGINS / "tiny_dist", source)
    site = work / "site"
    proc = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--no-cache-dir", "--target", str(site), str(source)],
        capture_output=True, text=True,
    )
    assert proc.returncode == 0, proc.stderr
    assert list(site.glob("proxmf_tiny_plugin-*.dist-info/entry_points.txt"))
    return site


def _cli(args, site=None, env_extra=None, cwd=None):
    env = {k: v for k, v in os.environ.items() if k != ENV_PLUGINS}
    if site is not None:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), env.get("PYTHONPATH", "")]))
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "proxmf_bench.cli", *args], capture_output=True,
                          text=True, env=env, cwd=cwd)


def test_entry_point_plugin_is_listed_and_runs(tiny_site, tmp_path):
    listed = _cli(["list", "solvers"], site=tiny_site)
    assert listed.returncode == 0, listed.stderr
    assert "tiny_mu" in listed.stdout and "[plugin tiny]" in listed.stdout

    plugins = _cli(["plugins"], site=tiny_site)
    assert "tiny  [ok]  entry point proxmf_tiny (proxmf-tiny-plugin 0.0.1)" in plugins.stdout

    out = tmp_path / "run"
    ran = _cli(["run", "--solvers", "tiny_mu,mu", "--datasets", "synthetic[m=30,n=20,rank=3]",
                "--max-iter", "20", "--out", str(out)], site=tiny_site)
    assert ran.returncode == 0, ran.stderr
    import pandas as pd

    frame = pd.read_parquet(out / "results.parquet")
    assert set(frame.solver) == {"tiny_mu", "mu"}
    last = frame[frame.iteration == 20].set_index("solver").loss
    assert last["tiny_mu"] < frame[frame.iteration == 0].loss.iloc[0]


def test_file_plugins_from_flag_and_environment():
    reg = load_registry([BAD], use_entry_points=False)
    assert {"exploding", "crashing", "sleepy"} <= set(reg.solvers)
    assert reg.owner[("datasets", "bad")] == "file:bad_things"
    os.environ[ENV_PLUGINS] = BAD
    try:
        reg = load_registry(use_entry_points=False)
    finally:
        del os.environ[ENV_PLUGINS]
    assert "exploding" in reg.solvers
    assert any(p.origin.endswith(f"(${ENV_PLUGINS})") for p in reg.plugins)


def test_broken_plugin_is_reported_and_skipped():
    reg = load_registry([BROKEN, BAD], use_entry_points=False)
    broken = next(p for p in reg.plugins if p.name == "file:broken_import")
    assert not broken.ok and "broken on purpose" in broken.error
    assert "exploding" in reg.solvers and "mu" in reg.solvers


def test_strict_plugins_makes_failure_fatal():
    with pytest.raises(PluginError, match="broken on purpose"):
        load_registry([BROKEN], strict=True, use_entry_points=False)


def test_duplicate_name_is_an_error_naming_both_plugins():
    reg = load_registry([DUPLICATE], use_entry_points=False)
    dup = next(p for p in reg.plugins if p.name == "file:duplicate_mu")
    assert "'proxmf_bench.solvers.mu'" in dup.error and "'file:duplicate_mu'" in dup.error
    assert reg.owner[("solvers", "mu")] == "proxmf_bench.solvers.mu"
    with pytest.raises(PluginError, match="registered twice"):
        load_registry([DUPLICATE], strict=True, use_entry_points=False)


def test_missing_plugin_file_is_reported():
    reg = load_registry(["/nonexistent/plugin.py"], use_entry_points=False)
    assert "plugin file not found" in reg.failed[0].error


def test_broken_plugin_does_not_stop_a_run(tmp_path, capsys):
    code = main(["run", "--plugin", BROKEN, "--solvers", "mu", "--datasets", "synthetic[m=30,n=20,rank=3]",
                 "--max-iter", "5", "--out", str(tmp_path / "run")])
    captured = capsys.readouterr()
    assert code == 0
    assert "warning: plugin 'file:broken_import'" in captured.err
    assert (tmp_path / "run" / "results.parquet").is_file()


def test_plugins_command_shows_origin_registrations_and_errors(capsys):
    code = main(["plugins", "--plugin", BROKEN, "--plugin", BAD])
    out = capsys.readouterr().out
    assert code == 0
    assert "proxmf_bench.solvers.mu  [ok]  builtin" in out
    assert "solvers: mu" in out
    assert f"file:broken_import  [FAILED]  file {BROKEN} (--plugin)" in out
    assert "error: ImportError: this plugin is broken on purpose" in out
    assert "solvers: exploding, crashing, sleepy" in out


def test_strict_plugins_flag_exits_non_zero(capsys):
    assert main(["list", "--strict-plugins", "--plugin", BROKEN]) == 2
    assert "broken on purpose" in capsys.readouterr().err
