"""Connection arguments of Airflow's SQLite metadata database (the embedded default),
named by AIRFLOW__DATABASE__SQL_ALCHEMY_CONNECT_ARGS in airflow_env.

SQLite has one writer. Under `make airflow` the scheduler, DAG processor, triggerer,
API server and any CLI command (`airflow backfill create`, `program-reporting run`)
take turns at it, and Python's default wait for the lock, 5 s, ran out on a busy
two-core machine ("database is locked", half a backfill created). A minute's wait is
still far below any task's time limit.

Free of imports: Airflow imports this while it reads its own configuration."""

CONNECT_ARGS = {"timeout": 60}
