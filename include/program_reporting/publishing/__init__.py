"""Publishing: the write-audit-publish step that makes a validated set current, its
Parquet exports and the alerts of a withheld or failed publication."""
