"""Built-in dataset plugins (installed as ``proxmf_bench.datasets``), one module per family."""
