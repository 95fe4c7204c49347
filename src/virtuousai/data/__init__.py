"""Data: the organization's lake (bronze/silver/gold parquet), the SQL guard, the locked DuckDB executor, the catalog
and query API, and the action kinds ``dlt_extract``, ``sql_transform`` and ``load``."""
