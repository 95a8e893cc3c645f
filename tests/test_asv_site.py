"""The asv tooling in benchmarks/: the published site made to work offline (checked in headless
Chromium where it is installed), and the noise measurement's arithmetic."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def _script(name):
    spec = importlib.util.spec_from_file_location(f"bench_script_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


site = _script("publish_site")
noise = _script("asv_noise")
ASV_WWW = Path(importlib.util.find_spec("asv").origin).parent / "www"


def test_every_cdn_file_of_asv_pages_has_a_local_copy(tmp_path):
    shutil.copytree(ASV_WWW, tmp_path / "html")
    html = tmp_path / "html"
    rewritten = site.localize(html)
    assert "index.html" in rewritten
    for page in html.glob("*.html"):
        assert not site.REMOTE_TAG.findall(page.read_text()), page.name
    text = (html / "index.html").read_text()
    for local in site.LOCAL.values():
        assert f'"vendor/{local}"' in text and (html / "vendor" / local).is_file()
    assert "integrity=" not in text and "crossorigin=" not in text
    assert site.localize(html) == []  # idempotent


def test_an_unknown_remote_script_is_refused(tmp_path):
    (tmp_path / "index.html").write_text('<script src="https://cdn.example.org/new.js"></script>')
    with pytest.raises(SystemExit, match="no local copy of https://cdn.example.org/new.js"):
        site.localize(tmp_path)
    assert not (tmp_path / "vendor").exists()


@pytest.mark.skipif(site.find_chromium() is None, reason="needs chromium (Debian: apt-get install chromium)")
def test_localized_scripts_run_offline_in_headless_chromium(tmp_path):
    """A page with asv's CDN tags, localized, runs jQuery and flot with no network."""
    (tmp_path / "index.html").write_text(
        '<html><head>'
        '<script src="https://code.jquery.com/jquery-3.3.1.min.js" crossorigin="anonymous"></script>'
        '<script src="https://cdnjs.cloudflare.com/ajax/libs/flot/0.8.3/jquery.flot.min.js"></script>'
        '</head><body><div id="out">not run</div>'
        '<script>$(function () { $("#out").text("ran " + typeof $.plot); });</script></body></html>'
    )
    before = site.rendered_dom(tmp_path, site.find_chromium())
    assert "not run" in before  # the CDN is unreachable: offline indeed
    site.localize(tmp_path)
    assert "ran function" in site.rendered_dom(tmp_path, site.find_chromium())


def test_noise_ratios_are_symmetric_and_skip_missing_results():
    first = {"a": 1.0, "b": 2.0, "c": 1.0, "d": float("nan")}
    second = {"a": 1.5, "b": 1.0, "d": 1.0}
    assert noise.ratios(first, second) == {"a": 1.5, "b": 2.0}
    assert noise._combinations([["x", "y"], ["1"]]) == [("x", "1"), ("y", "1")]


def test_benchmark_modules_import_in_the_small_asv_environment():
    """asv imports every module in benchmarks/ in an environment holding only torch, numpy,
    scipy, pluggy and tqdm (asv.conf.json): none may import the project's other dependencies."""
    import subprocess
    import sys

    blocked = ["pandas", "pyarrow", "matplotlib", "sklearn", "tensorly", "torchnmf", "dask"]
    modules = sorted(p.stem for p in BENCHMARKS.glob("*.py") if p.stem != "__init__")
    code = (f"import sys\nfor name in {blocked!r}: sys.modules[name] = None\n"
            f"import importlib\nfor m in {modules!r}: importlib.import_module('benchmarks.' + m)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=BENCHMARKS.parent, capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]


def test_the_pull_request_subset_lists_every_builtin_family_and_prox(registry):
    """The subset's parameter lists are written out (so that both commits of a comparison see
    the same list); a new built-in solver family or prox operator must be added to them."""
    from benchmarks.common import PR_PROX, PR_SOLVERS, prox_operators, stepped_solvers

    assert set(stepped_solvers()) == set(PR_SOLVERS)
    assert set(prox_operators()) == set(PR_PROX)
