"""Set up Superset's metadata for program-reporting, in one process (docs/bi.md):
migrate the SQLite metadata database, create the roles and permissions (what
`superset db upgrade` and `superset init` do), create or update the admin, import the
"Program KPIs" bundle, and keep the read-only role "KPI Viewer".

Run by Superset's own Python (.venv-bi/bin/python) from program_reporting.bi.server,
with SUPERSET_CONFIG_PATH and PROGRAM_REPORTING_BI_HOME set; it imports nothing of the
project. It reads its request as JSON on standard input (so that no password shows in a
process list) and prints what it set up as one JSON line on standard output:

  {"admin_user": ..., "admin_password": ..., "bundle": "<zip>", "passwords": {...},
   "viewer_role": "KPI Viewer", "dashboard_slug": "program-kpis"}
"""

from __future__ import annotations

import json
import logging
import sys
import time
import zipfile

# Superset logs to standard error; standard output carries only the result.
logging.basicConfig(stream=sys.stderr, level=logging.WARNING)

# A viewer reads dashboards, charts and their data, and keeps its own filter state and
# permalinks; it writes nothing shared and runs no SQL. These are the Gamma permissions
# it does not get.
NOT_FOR_VIEWERS = {
    "can_write",
    "can_add",
    "can_edit",
    "can_delete",
    "can_tag",
    "can_bulk_create",
    "can_delete_embedded",
    "can_put_chart_customizations",
    "can_export_as_example",
    "can_invalidate",
}
VIEWER_OWN_STATE = {
    "DashboardFilterStateRestApi",
    "DashboardPermalinkRestApi",
    "ExploreFormDataRestApi",
    "ExplorePermalinkRestApi",
    "CurrentUserRestApi",
}
# The export types of the bundle's files, in the order Superset's importers need them.
IMPORTS = (("databases/", "Database"), ("datasets/", "SqlaTable"), ("charts/", "Slice"), ("dashboards/", "Dashboard"))


def main() -> int:
    request = json.load(sys.stdin)
    started = time.monotonic()
    from superset.app import create_app

    app = create_app()
    with app.app_context():
        timings = {}
        t = time.monotonic()
        migrated = upgrade_metadata(app)
        timings["migrate"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        init_permissions(app, force=migrated)
        timings["init"] = round(time.monotonic() - t, 1)
        admin = ensure_admin(request["admin_user"], request["admin_password"])
        t = time.monotonic()
        imported = import_bundle(request["bundle"], request.get("passwords") or {}, admin)
        timings["import"] = round(time.monotonic() - t, 1)
        viewer = ensure_viewer_role(request["viewer_role"], imported["datasets"])
        dashboard = imported["dashboard"]
        print(
            json.dumps(
                {
                    "dashboard_id": dashboard.id,
                    "dashboard_title": dashboard.dashboard_title,
                    "dashboard_url": f"/superset/dashboard/{dashboard.slug or dashboard.id}/",
                    "charts": {c.slice_name: c.id for c in dashboard.slices},
                    "datasets": imported["dataset_ids"],
                    "databases": imported["database_ids"],
                    "viewer_role": viewer,
                    "seconds": round(time.monotonic() - started, 1),
                    "timings": timings,
                }
            )
        )
    return 0


def upgrade_metadata(app) -> bool:
    """Alembic migrations of the metadata database (`superset db upgrade`); True when
    any ran, so that the permissions are synced again."""
    from alembic.migration import MigrationContext
    from flask_migrate import upgrade
    from superset.extensions import db

    def revision():
        with db.engine.connect() as conn:
            return MigrationContext.configure(conn).get_current_revision()

    before = revision()
    upgrade()
    return revision() != before


def init_permissions(app, force: bool) -> None:
    """`superset init`: every view's permissions and the built-in roles. It takes half a
    minute, so it runs when the metadata was migrated or Superset's version changed."""
    from pathlib import Path

    from superset import appbuilder, security_manager
    from superset.extensions import db

    marker = Path(app.config["BI_HOME"]) / "initialised"
    version = app.config["VERSION_STRING"]
    if not force and marker.exists() and marker.read_text().strip() == version:
        return
    appbuilder.add_permissions(update_perms=True)
    security_manager.sync_role_definitions()
    db.session.commit()
    marker.write_text(version + "\n")


def ensure_admin(username: str, password: str):
    """The admin of the settings, with this password (reset at every start, so that
    changing PROGRAM_REPORTING_BI_ADMIN_PASSWORD changes it)."""
    from superset import security_manager
    from superset.extensions import db

    role = security_manager.find_role("Admin")
    user = security_manager.find_user(username=username)
    if user is None:
        user = security_manager.add_user(username, "Program", "Admin", f"{username}@localhost", role, password=password)
        if not user:
            raise SystemExit(f"could not create the Superset admin {username!r}")
    else:
        security_manager.reset_password(user.id, password)
        if role not in user.roles:
            user.roles.append(role)
    db.session.commit()
    return security_manager.find_user(username=username)


def import_bundle(path: str, passwords: dict[str, str], admin) -> dict:
    """Import the bundle's databases, datasets, charts and dashboard, overwriting earlier
    imports (a dashboard import alone keeps existing datasets as they were, and so
    their old metrics). The importers of each type check metadata.yaml's type, so each
    gets the bundle with its own type."""
    from superset.commands.chart.importers.v1 import ImportChartsCommand
    from superset.commands.dashboard.importers.v1 import ImportDashboardsCommand
    from superset.commands.database.importers.v1 import ImportDatabasesCommand
    from superset.commands.dataset.importers.v1 import ImportDatasetsCommand
    from superset.commands.importers.v1.utils import get_contents_from_bundle
    from superset.connectors.sqla.models import SqlaTable
    from superset.models.core import Database
    from superset.models.dashboard import Dashboard
    from superset.utils.core import override_user

    with zipfile.ZipFile(path) as bundle:
        contents = get_contents_from_bundle(bundle)
    commands = {
        "Database": ImportDatabasesCommand,
        "SqlaTable": ImportDatasetsCommand,
        "Slice": ImportChartsCommand,
        "Dashboard": ImportDashboardsCommand,
    }
    import yaml
    from superset.extensions import db

    metadata = yaml.safe_load(contents["metadata.yaml"])
    configs = {name: yaml.safe_load(text) for name, text in contents.items() if name != "metadata.yaml"}
    with override_user(admin):
        for _prefix, kind in IMPORTS:
            typed = {**contents, "metadata.yaml": yaml.safe_dump({**metadata, "type": kind})}
            commands[kind](typed, overwrite=True, passwords=passwords).run()
            if kind == "Database":
                move_datasets(configs)
    uuids = {kind: [c["uuid"] for n, c in configs.items() if n.startswith(prefix)] for prefix, kind in IMPORTS}
    datasets = db.session.query(SqlaTable).filter(SqlaTable.uuid.in_(uuids["SqlaTable"])).all()
    databases = db.session.query(Database).filter(Database.uuid.in_(uuids["Database"])).all()
    dashboard = db.session.query(Dashboard).filter(Dashboard.uuid == uuids["Dashboard"][0]).one()
    return {
        "datasets": datasets,
        "dataset_ids": {d.table_name: d.id for d in datasets},
        "database_ids": {d.database_name: d.id for d in databases},
        "dashboard": dashboard,
    }


def move_datasets(configs: dict[str, dict]) -> None:
    """A dataset the bundle now puts on the other database (PROGRAM_REPORTING_TARGET
    changed) is moved there first, keeping its id, charts and permissions: the importer
    matches an existing dataset by database, schema and table name, not by uuid, and
    SQLite's metadata allows one dataset per table name."""
    from superset.connectors.sqla.models import SqlaTable
    from superset.extensions import db
    from superset.models.core import Database

    for name, config in configs.items():
        if not name.startswith("datasets/"):
            continue
        dataset = db.session.query(SqlaTable).filter_by(uuid=config["uuid"]).one_or_none()
        database = db.session.query(Database).filter_by(uuid=config["database_uuid"]).one()
        if dataset is not None and dataset.database_id != database.id:
            dataset.database_id = database.id
            dataset.schema = config.get("schema")
    db.session.commit()


def ensure_viewer_role(name: str, datasets) -> str:
    """The role "KPI Viewer": Gamma's permissions less those that write shared objects,
    plus read access to the bundle's datasets. Kept exactly so at every start."""
    from superset import security_manager
    from superset.extensions import db

    gamma = security_manager.find_role("Gamma")
    role = security_manager.find_role(name) or security_manager.add_role(name)
    wanted = [
        pv
        for pv in gamma.permissions
        if pv.permission.name not in NOT_FOR_VIEWERS or pv.view_menu.name in VIEWER_OWN_STATE
    ]
    for dataset in datasets:
        wanted.append(security_manager.add_permission_view_menu("datasource_access", dataset.perm))
    role.permissions = list({pv.id: pv for pv in wanted}.values())
    db.session.commit()
    return role.name


if __name__ == "__main__":
    sys.exit(main())
