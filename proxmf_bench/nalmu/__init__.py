"""NALMU, unrolled multiplicative updates with trainable weights: the ``nn.Module`` and its
weights files (``model``) and supervised training (``train``). The benchmark solver is the
plugin ``proxmf_bench.solvers.nalmu``."""
