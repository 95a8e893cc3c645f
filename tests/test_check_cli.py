"""``proxmf-bench check``: which specs it checks, its table, its exit status, and the README's
plugin examples passing it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import REPO
from proxmf_bench.cli import main

PLUGINS = Path(__file__).parent / "plugins"
WRONG_PROX = str(PLUGINS / "wrong_prox.py")
TINY = str(PLUGINS / "tiny_dist" / "src" / "proxmf_tiny" / "__init__.py")


def _readme_block(marker: str) -> str:
    readme = (REPO / "README.md").read_text()
    block = re.search(rf"<!-- {marker} -->\n```python\n(.*?)```\n<!-- /{marker} -->", readme, re.S)
    assert block, f"README.md lacks the {marker} example"
    return block.group(1)


def test_help_lists_what_is_checked(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["check", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "usage: proxmf-bench check" in out and "--plugin" in out and "exit status: 0 when every" in out


def test_a_wrong_prox_fails_with_a_counterexample(capsys):
    assert main(["check", "--plugin", WRONG_PROX, "soft2"]) == 1
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "prox soft2  [plugin file:wrong_prox]"
    failed = lines.index(next(line for line in lines if line.startswith("  FAILED   argmin: no nearby point")))
    assert lines[failed + 1].lstrip().startswith("input:    X = [")
    assert lines[failed + 2].lstrip().startswith("expected: F(Z) <= F(C) = ")
    assert lines[failed + 3].lstrip().startswith("got:      Z = [")
    assert re.search(r"^  ok       output has the input's shape, dtype and device  \(\d+ cases\)$", out, re.M)
    assert out.rstrip().endswith("1 checked: 0 passed, 1 failed (2 properties: prox soft2)")


@pytest.mark.parametrize(("marker", "header"), [("prox-plugin", "prox ridge_nonneg  [plugin file:plugin]"),
                                                 ("solver-plugin", "solver my_mu  [plugin file:plugin]")])
def test_the_readme_plugins_pass(marker, header, tmp_path, capsys):
    path = tmp_path / "plugin.py"
    path.write_text(_readme_block(marker))
    assert main(["check", "--plugin", str(path), "--strict-plugins"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(header + "\n") and "FAILED" not in out
    assert out.rstrip().endswith("1 checked: 1 passed, 0 failed")


def test_by_default_only_third_party_specs_are_checked(capsys):
    assert main(["check", "--plugin", TINY]) == 0
    out = capsys.readouterr().out
    assert "solver tiny_mu  [plugin file:__init__]" in out
    assert "prox simplex" not in out and "solver mu " not in out


def test_names_pick_any_spec_with_parameters(capsys):
    assert main(["check", "simplex[s=2]", "nnls_toy"]) == 0
    out = capsys.readouterr().out
    assert "prox simplex  [plugin proxmf_bench.solve.prox]" in out and "dataset nnls_toy" in out
    # given parameters replace the defaults, the examples and the range sweep
    assert "works across the declared parameter ranges" not in out.split("dataset nnls_toy")[0]
    assert "2 checked: 2 passed, 0 failed" in out


def test_invalid_data_is_a_failed_check(capsys):
    assert main(["check", "--plugin", str(PLUGINS / "hostile_data.py"), "hostile[kind=inf]"]) == 1
    out = capsys.readouterr().out
    assert "FAILED   load() returns a valid Problem" in out and "NaN or infinite entries" in out


def test_a_plugin_that_fails_to_load_fails_the_check(capsys):
    assert main(["check", "--plugin", str(PLUGINS / "broken_import.py")]) == 1
    out = capsys.readouterr().out
    assert "plugin file:broken_import" in out and "FAILED   plugin imports and registers" in out


@pytest.mark.parametrize(("args", "message"), [
    ([], "nothing to check: no third-party plugin is registered"),
    (["simplx"], "unknown solver, dataset or prox operator 'simplx'; did you mean 'simplex'?"),
    (["simplex", "--device", "tpu"], "--device: 'tpu' is not a device"),
    (["mu[eps=1"], "malformed selection 'mu[eps=1'"),
    (["simplex[s=-1]"], "prox simplex: parameter s=-1.0 is below its minimum 0"),
])
def test_bad_input_is_a_one_line_error(args, message, capsys):
    assert main(["check", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("proxmf-bench: error: ") and message in err and err.count("\n") == 1


def test_the_readme_shows_the_real_output(capsys):
    readme = (REPO / "README.md").read_text()
    start = readme.index("prox soft2  [plugin file:wrong_prox]")
    shown = [line for line in readme[start : readme.index("```", start)].splitlines() if line.strip() != "..."]
    main(["check", "--plugin", WRONG_PROX, "soft2"])
    out = capsys.readouterr().out.splitlines()
    assert [line for line in shown if line not in out] == []
