# The project's Airflow image: the official Airflow image plus this project,
# installed from the same lock the tests run against.
FROM apache/airflow:3.3.2-python3.11

USER root
# Quarantine and restricted layers are created owner-only; the airflow user owns the data volume.
RUN mkdir -p /opt/program-reporting/data && chown -R airflow:0 /opt/program-reporting
USER airflow

WORKDIR /opt/program-reporting
COPY --chown=airflow:0 requirements.lock pyproject.toml README.md ./
RUN grep -v '^apache-airflow' requirements.lock > /tmp/requirements.txt \
 && pip install --no-cache-dir -r /tmp/requirements.txt
COPY --chown=airflow:0 include ./include
COPY --chown=airflow:0 dags ./dags
COPY --chown=airflow:0 dbt_project ./dbt_project
COPY --chown=airflow:0 expectations ./expectations
RUN pip install --no-cache-dir --no-deps -e . \
 && DBT_SEND_ANONYMOUS_USAGE_STATS=False python -c "from program_reporting.warehouse.build import ensure_manifest; ensure_manifest()"
