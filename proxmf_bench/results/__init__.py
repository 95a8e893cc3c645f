"""Results: the long table and its atomic, checksummed parquet files (``table``), what the
report computes from it (``analysis``), the figures (``figures``) and the offline HTML
report (``report``)."""
