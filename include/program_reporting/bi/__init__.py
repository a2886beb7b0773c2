"""The BI tools' side: Apache Superset on the published KPIs (`make bi`), its dashboard
bundle, and dataset metrics generated from the dbt semantic layer (docs/bi.md).

Superset runs in a virtual environment of its own (.venv-bi/): this package only
prepares and starts it, and imports nothing of Superset."""
