"""Scale-out: cohort stages on a Dask cluster (local by default, or an existing one by address)."""
