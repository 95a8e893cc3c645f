"""A dask worker preload (``dask worker ... --preload FILE``): the worker cannot import
proxmf-bench, as on a machine where it is not installed."""

import importlib.abc
import sys


class _NotInstalled(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "proxmf_bench" or name.startswith("proxmf_bench."):
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None


sys.meta_path.insert(0, _NotInstalled())
