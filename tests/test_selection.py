"""Selection strings: grammar, list expansion, defaults, errors with suggestions."""

import pytest

from proxmf_bench.errors import UserError
from proxmf_bench.plugin.selection import parse_item, select, split_top_level


def test_split_respects_brackets():
    assert split_top_level("mu,pgm[a=1,b=[2,3]],x") == ["mu", "pgm[a=1,b=[2,3]]", "x"]


def test_parse_item_with_list_value():
    assert parse_item("pgm[lam=[0.1,1],prox=l1]") == ("pgm", {"lam": ["0.1", "1"], "prox": "l1"})


@pytest.mark.parametrize("bad", ["mu[", "mu]", "mu[eps]", "mu[eps=]", "mu[=1]", "mu[eps=1,eps=2]",
                                 "mu[eps=[1,2]", "1mu", "mu[eps=[]]", "mu x"])
def test_malformed_selections_are_user_errors(bad, registry):
    with pytest.raises(UserError):
        select(bad, registry.solvers, registry, "solver")


def test_list_values_expand_into_variants(registry):
    variants = select("synthetic[rank=[2,3],noise=0.1]", registry.datasets, registry, "dataset")
    assert [v.label for v in variants] == ["synthetic[rank=2,noise=0.1]", "synthetic[rank=3,noise=0.1]"]
    assert [v.params["rank"] for v in variants] == [2, 3]
    assert all(v.params["m"] == 200 for v in variants)


def test_all_selects_every_solver(registry):
    names = {v.name for v in select("all", registry.solvers, registry, "solver")}
    assert names == set(registry.solvers)


def test_unknown_name_suggests_close_match(registry):
    with pytest.raises(UserError, match="did you mean 'synthetic'"):
        select("synthetc", registry.datasets, registry, "dataset")


def test_unknown_and_out_of_range_parameters(registry):
    with pytest.raises(UserError, match="unknown parameter 'esp'.*did you mean 'eps'"):
        select("mu[esp=1]", registry.solvers, registry, "solver")
    with pytest.raises(UserError, match="below its minimum"):
        select("mu[eps=-1]", registry.solvers, registry, "solver")
    with pytest.raises(UserError, match="not a valid int"):
        select("synthetic[m=abc]", registry.datasets, registry, "dataset")


def test_duplicate_variants_are_dropped(registry):
    assert len(select("mu,mu[eps=1e-12]", registry.solvers, registry, "solver")) == 1
