"""One pipeline stage in its own process, for the fault-injection tests.

    python tests/helpers/fault_runner.py <stage> <ds> <run_id>

stage: land | build | audit | gate (validate_landed + validate + publish + report,
i.e. wap.audit_and_publish) | brief (Parquet exports and the KPI brief).
Paths come from PROGRAM_REPORTING_DROP / _HOME. PROGRAM_REPORTING_FAILPOINT names
where to die (include/program_reporting/core/failpoints.py); the functions of the
modules are instrumented here, in the child only, so that no module owned by
someone else needs a line for it. Prints one JSON line on success.
"""

from __future__ import annotations

import json
import logging
import sys

from program_reporting.core import failpoints

# (module, function, failpoint name): each gets <name>.before / <name>.after
INSTRUMENTED = [
    ("program_reporting.landing.land", "swap", "landing.swap"),
    ("program_reporting.landing.land", "_write_and_swap", "landing.write"),
    ("program_reporting.landing.land", "release_orphans", "landing.release_orphans"),
    ("program_reporting.warehouse.build", "_invoke", "build.dbt"),
    ("program_reporting.warehouse.build", "_write_build_log", "build.log"),
    ("program_reporting.warehouse.build", "stage_audit", "build.stage_audit"),
    ("program_reporting.validation.gate", "_run", "gate.suites"),
    ("program_reporting.validation.gate", "validate", "gate.validate"),
    ("program_reporting.publishing.publish", "_fsync_file", "publish.fsync_file"),
    ("program_reporting.publishing.publish", "_fsync_dir", "publish.fsync_dir"),
    ("program_reporting.publishing.publish", "publish", "publish.publish"),
    ("program_reporting.reporting.report", "render_html", "report.render_html"),
    ("program_reporting.reporting.report", "sha256_file", "report.index_entry"),
    ("program_reporting.reporting.report", "render_index", "report.render_index"),
]


def instrument() -> None:
    import importlib

    for module_name, function, name in INSTRUMENTED:
        failpoints.instrument(importlib.import_module(module_name), function, name)


def main(stage: str, ds: str, run_id: str) -> dict:
    instrument()
    if stage == "land":
        from program_reporting.core import settings
        from program_reporting.landing import land as landing

        out = {s: landing.land(s, ds) for s in settings.SOURCES}
        out["release"] = landing.release_orphans(ds)
        return {"stage": stage, "loaded": {s: out[s]["loaded"] for s in settings.SOURCES}}
    if stage == "build":
        from program_reporting.warehouse import build

        return {"stage": stage, "nodes": build.build(ds, run_id)["nodes"]}
    if stage == "audit":
        from program_reporting.warehouse import build

        return {"stage": stage, "audit": str(build.stage_audit(run_id, ds))}
    if stage == "gate":
        from program_reporting.publishing.wap import audit_and_publish

        outcome = audit_and_publish(run_id, ds)
        return {"stage": stage, "published": outcome.published, "reason": outcome.reason}
    if stage == "brief":
        from program_reporting.publishing import exports
        from program_reporting.reporting import brief

        exports.export_parquet()
        return {"stage": stage, "brief": str(brief.write_brief())}
    raise SystemExit(f"unknown stage {stage}")


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    print(json.dumps(main(*sys.argv[1:4])))
