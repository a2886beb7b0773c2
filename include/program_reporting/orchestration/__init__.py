"""Orchestration: the Airflow side. The environments (embedded and Celery), the standalone
server, the nightly DAG's steps, sensors and assets, and `program-reporting run`."""
