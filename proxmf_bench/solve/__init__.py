"""What solvers are built from: the prox operators (``prox``), the shared proximal-gradient
machinery (``proxgrad``), the multiplicative-update kernels (``mu``), the ``torch.optim``
optimizer ``ProxSGD`` (``optim``), the black-box solver protocol (``blackbox``) and the
plumbing of other libraries' solvers (``peers``). The solvers themselves are plugins in
``proxmf_bench.solvers``."""
