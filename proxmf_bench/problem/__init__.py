"""The factorization problem: ``Problem`` and its loss (``problem``), the initial factors every
solver of a (dataset, seed) shares (``start``) and the ground-truth metrics (``metrics``)."""
