"""Apache Superset's configuration for program-reporting (docs/bi.md).

SUPERSET_CONFIG_PATH points here; program_reporting.bi.server sets it, with
PROGRAM_REPORTING_BI_HOME (<home>/bi), for every Superset process it starts. This file runs
inside Superset's own virtual environment (.venv-bi/): it imports nothing of the project."""

import os
from pathlib import Path

BI_HOME = Path(os.environ["PROGRAM_REPORTING_BI_HOME"])

# Superset's own metadata (users, dashboards, charts, datasets): SQLite under the home.
# The published data stays where the pipeline publishes it, read through the two
# databases the bundle registers.
SQLALCHEMY_DATABASE_URI = "sqlite:///" + str(BI_HOME / "superset.db")

# Signs sessions and encrypts the stored database passwords: PROGRAM_REPORTING_BI_SECRET_KEY
# if set, else the key generated once into <home>/bi/secret_key (mode 0600).
SECRET_KEY = os.environ.get("PROGRAM_REPORTING_BI_SECRET_KEY") or (BI_HOME / "secret_key").read_text().strip()

APP_NAME = "Program KPIs"

# Dashboard native filters (program, region, segment, date) and cross-filters are built
# into Superset since 4.0: the DASHBOARD_NATIVE_FILTERS and DASHBOARD_CROSS_FILTERS flags
# are gone. What is switched here is what the dashboards must not do.
FEATURE_FLAGS = {
    "ALERT_REPORTS": False,  # no e-mail or Slack reports: no Celery worker, no outside address
    "THUMBNAILS": False,  # thumbnails need a headless browser and a Celery worker
    "ENABLE_TEMPLATE_PROCESSING": False,  # no Jinja in SQL: a metric is the semantic layer's SQL
    "DASHBOARD_RBAC": False,  # who sees a dashboard follows who may read its datasets
    "EMBEDDED_SUPERSET": False,
    "ENABLE_SUPERSET_META_DB": False,
}

# Every chart query goes to the database: a publication replaces current.duckdb by a
# rename, and the next query, on a new connection (Superset uses NullPool for the
# databases it queries), reads the new set. No cache could serve the old one.
CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}
DATA_CACHE_CONFIG = {"CACHE_TYPE": "NullCache"}

# The API is used with a session or a JWT (/api/v1/security/login); writing calls need
# the CSRF token from /api/v1/security/csrf_token/. Superset's defaults exempt only the
# chart-data endpoint, which reads.
WTF_CSRF_ENABLED = True
WTF_CSRF_TIME_LIMIT = None  # a token lives as long as the session

# Nothing leaves 127.0.0.1: the browser may load only this server's own assets. The
# frontend's telemetry pixel (apachesuperset.gateway.scarf.sh) is refused by this policy
# before any request is made, and no map tiles or web fonts are fetched from outside.
TALISMAN_ENABLED = True
TALISMAN_CONFIG = {
    "content_security_policy": {
        "base-uri": ["'self'"],
        "default-src": ["'self'"],
        "img-src": ["'self'", "blob:", "data:"],
        "worker-src": ["'self'", "blob:"],
        "connect-src": ["'self'"],
        "object-src": "'none'",
        "style-src": ["'self'", "'unsafe-inline'"],
        "font-src": ["'self'", "data:"],
        "script-src": ["'self'", "'strict-dynamic'"],
    },
    "content_security_policy_nonce_in": ["script-src"],
    "force_https": False,
    "session_cookie_secure": False,
}
CONTENT_SECURITY_POLICY_WARNING = False
THEME_FONT_URL_ALLOWED_DOMAINS = []
FAB_API_SWAGGER_UI = False  # its page loads scripts from a CDN
MAPBOX_API_KEY = ""
DOCUMENTATION_URL = None
BUG_REPORT_URL = None
TROUBLESHOOTING_LINK = ""

# SQLite metadata is for one machine: the server runs a few gunicorn threads, no Celery.
SQLLAB_ASYNC_TIME_LIMIT_SEC = 300
SQLLAB_TIMEOUT = 60
SUPERSET_WEBSERVER_TIMEOUT = 120
ROW_LIMIT = 50000
