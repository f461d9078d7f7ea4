"""The first view of the slmbench experiment in the MLflow UI, preset on the server.

What MLflow 3.17.2 keeps on the server, and so what this module sets (read from its UI bundle,
`mlflow/server/js/build/static/js`):

- A *saved view* is an experiment tag `mlflow.sharedViewState.<key>` whose value is an envelope
  `{"name", "createdAt", "updatedAt", "state"}`; `state` is the JSON of the runs page's search facets
  (searchFilter, orderByKey, orderByAsc, startTime, lifecycleFilter, datasetsFilter,
  modelVersionFilter) and UI state (selectedColumns, columnOrder, columnWidths, compareRunCharts,
  compareRunSections, isAccordionReordered, groupBy, hideEmptyCharts, ...), plain or `deflate;` +
  base64. The page `#/experiments/<id>/runs?viewStateShareKey=<key>` applies it, and the *Views*
  menu above the runs table lists it by name (at most 40 per experiment, 20,000 characters each).
  The table/chart switch is not part of it: it is the URL parameter `compareRunsMode` (TABLE, CHART).
- `runsExpanded`, `runsPinned`, `runsHidden`, `runsVisibilityMap` and `autoRefreshEnabled` are left
  out of a saved view on purpose (the UI drops them on save and on load). A sweep's jobs are shown
  as rows of their own by filtering on the job runs (`tags.slmbench.kind = 'job'`): a child run
  whose parent is not in the result is listed at the top level.
- The experiment description is the tag `mlflow.note.content` (markdown, shown above the tabs).
- `mlflow.experimentKind` (`custom_model_development` = the classic runs view) is set for UIs that
  read it; 3.17.2's does not: its sidebar toggle *GenAI / Model training* decides, kept in the
  browser (localStorage `mlflow.workflowType_v1`, default GenAI) unless the URL says
  `workflowType=machine_learning`, which the URL returned here does.
- Only in the browser, never on the server: the Assistant panel (localStorage
  `mlflow.assistant.panelOpen_v1`; on a 127.0.0.1/localhost server the first visit opens it once by
  itself, `mlflow.assistant.fab.autoOpenedOnFirstLoad_v1`), expanded rows, the GenAI/Model training
  toggle, dark mode, and the per-browser copy of the last runs-page state (`ExperimentPage` store).
  README_CLICKS says what a person clicks for those.
"""

from __future__ import annotations

import hashlib
import json
import time
from urllib.parse import urlencode

from runner.metrics import catalog

VIEW_KEY = "slmbench"  # the share key: experiment tag mlflow.sharedViewState.slmbench
VIEW_NAME = "slmbench: jobs"  # as the Views menu lists it
SHARED_VIEW_PREFIX = "mlflow.sharedViewState."
VIEW_TAG = SHARED_VIEW_PREFIX + VIEW_KEY
WRITTEN_TAG = "slmbench.view.sha"  # hash of the state this module last wrote (a person's edit is kept)
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"
NOTE_TAG = "mlflow.note.content"
JOB_FILTER = "tags.`slmbench.kind` = 'job'"

METRICS = ["decode_tps.p50", "ttft_s.p95", "e2e_s.p95", "rss_peak_mb", "quality.overall", "quality.trusted"]
PARAMS = ["model.precision"]
TAGS = ["model", "hardware", "status"]
SECTION = "slmbench"  # the chart section of the preset charts, first and open
MODEL_METRICS, SYSTEM_METRICS = "Model metrics", "System metrics"  # MLflow's own sections, closed

def _row(column: str, kind: str, key: str) -> str:
    """A description table row of a metric column, its definition from the catalog."""
    return f"| `{column}`{kind} | {catalog.spec(key).definition} |"


NOTE = "\n".join([
    "**slmbench** logs one parent run per sweep (its report, summary.csv and plots) and one child run",
    "per job. The preset view (*Views* > *slmbench: jobs*) lists the jobs, fastest first:", "",
    "| column | meaning |", "|---|---|",
    "| `model` (tag) | the model's label (registry alias, or `model.id` on an endpoint) |",
    "| `model.precision` (param) | the weights' precision (int4, int8, fp32, ...) |",
    "| `hardware` (tag) | the execution provider asked for; `summary.json` `device` says what ran |",
    *[_row(f"{m}", "", m) for m in METRICS],
    "| `status` (tag) | ok, partial or failed (the cause is in the `error` tag) |", "",
    "Charts (the chart icon above the table): speed vs quality (`decode_tps.p50` against `quality.overall`,",
    "one point per job) and TTFT p95 per job. Percentiles are over the measured requests of `run.rounds`",
    "passes; warm-up requests are not counted. Each job's requests are its traces (*Traces* tab), with",
    "the grades as assessments."])
README_CLICKS = """What the server cannot keep is kept by your browser after one click each:
the *MLflow Assistant* panel opens by itself on the first visit to a local server; close it with
the X at its top right and it stays closed. At the top of the left sidebar choose *Model training*
(not *GenAI*): the experiment then opens on its runs rather than on its traces (the link
`slmbench ui` prints already says so). A sweep's jobs are listed as rows of their own because the
view filters on `tags.slmbench.kind = 'job'`; clear the search box to see the sweeps' parent rows
again (expand one with the + before its name). To get back to the preset after changing columns or
charts, pick *Views* > *slmbench: jobs* above the table."""


def _col(kind: str, key: str) -> str:
    return f"{kind}.`{key}`"  # the runs table's column ids (MLflow's makeCanonicalSortKey)


# the table's own columns: run name, created (with the +/- of a parent row), duration
RUN_NAME, CREATED, DURATION = "attributes.`Run Name`", "runDateAndNestInfo", "duration"
WIDTHS = {RUN_NAME: 200, _col("tags", "model"): 170, _col("params", "model.precision"): 125,
          _col("tags", "hardware"): 95, _col("metrics", "decode_tps.p50"): 125,
          _col("metrics", "ttft_s.p95"): 100, _col("metrics", "e2e_s.p95"): 100,
          _col("metrics", "rss_peak_mb"): 115, _col("metrics", "quality.overall"): 125,
          _col("metrics", "quality.trusted"): 120,
          _col("tags", "status"): 80}


def columns() -> list[str]:
    """The table's columns, in order, as the runs page names them."""
    return ([_col("tags", "model"), _col("params", "model.precision"), _col("tags", "hardware")]
            + [_col("metrics", m) for m in METRICS] + [_col("tags", "status")])


def charts() -> tuple[list[dict], list[dict]]:
    """The preset chart cards and chart sections (the shapes of MLflow's RunsChartsCardConfig)."""
    base = {"runsCountToCompare": 100, "metricSectionId": SECTION, "deleted": False, "isGenerated": False}
    cards = [
        {**base, "uuid": "slmbench-speed-quality", "type": "SCATTER",
         "displayName": f"Speed vs quality ({catalog.label('decode_tps.p50')} vs quality.overall 1-5)",
         "xaxis": {"key": "decode_tps.p50", "type": "METRIC"},
         "yaxis": {"key": "quality.overall", "type": "METRIC"}},
        {**base, "uuid": "slmbench-ttft-p95", "type": "BAR", "displayName": "TTFT p95 (s) per job",
         "metricKey": "ttft_s.p95"},
        {**base, "uuid": "slmbench-decode-p50", "type": "BAR", "displayName": f"decode_tps.p50 ({catalog.unit('decode_tps')}) per job",
         "metricKey": "decode_tps.p50"},
        {**base, "uuid": "slmbench-rss-peak", "type": "BAR", "displayName": "Peak RSS (MB) per job",
         "metricKey": "rss_peak_mb"},
    ]
    sections = [{"uuid": SECTION, "name": "slmbench", "display": True, "isReordered": False,
                 "deleted": False, "isGenerated": False}]
    # MLflow adds a chart of its own for every other metric, into these sections: kept closed.
    sections += [{"uuid": f"slmbench-{name.split()[0].lower()}", "name": name, "display": False,
                  "isReordered": False, "deleted": False, "isGenerated": True}
                 for name in (MODEL_METRICS, SYSTEM_METRICS)]
    return cards, sections


def view_state() -> dict:
    """The saved view's state: search facets and UI state, as the runs page stores them."""
    cards, sections = charts()
    return {
        # search facets
        "searchFilter": JOB_FILTER, "orderByKey": _col("metrics", "decode_tps.p50"), "orderByAsc": False,
        "startTime": "ALL", "lifecycleFilter": "Active", "datasetsFilter": [],
        "modelVersionFilter": "All Runs",
        # UI state
        "selectedColumns": columns(), "columnOrder": [RUN_NAME, *columns(), CREATED, DURATION],
        "columnWidths": WIDTHS, "runsHiddenMode": "SHOW_ALL",
        "compareRunCharts": cards, "compareRunSections": sections, "isAccordionReordered": True,
        "viewMaximized": False, "runListHidden": False, "useGroupedValuesInCharts": True,
        "hideEmptyCharts": True,
        "groupBy": None, "groupsExpanded": {}, "chartsSearchFilter": "",
        "globalLineChartConfig": {"xAxisKey": "step", "lineSmoothness": 0, "selectedXAxisMetricKey": ""},
    }


def _sha(state_json: str) -> str:
    return hashlib.sha256(state_json.encode()).hexdigest()[:16]


def parse_view(value: str) -> dict:
    """The state of a saved-view tag value (the envelope this module writes, or MLflow's own older
    forms: a bare state, plain or `deflate;` + base64)."""
    import base64
    import zlib

    def plain(text: str) -> str:
        if not text.startswith("deflate;"):
            return text
        return zlib.decompress(base64.b64decode(text[len("deflate;"):])).decode()

    obj = json.loads(plain(value))
    if isinstance(obj, dict) and isinstance(obj.get("state"), str) and "name" in obj:
        return json.loads(plain(obj["state"]))
    return obj


def view_url(experiment_id: str, mode: str = "TABLE") -> str:
    """The URL fragment opening the preset view: `mode` TABLE (runs table) or CHART (charts)."""
    q = {"workflowType": "machine_learning", "viewStateShareKey": VIEW_KEY}
    if mode != "TABLE":
        q["compareRunsMode"] = mode
    return f"#/experiments/{experiment_id}/runs?{urlencode(q)}"


def prepare_experiment(client, experiment_id: str) -> str | None:
    """Set what the server keeps of the experiment's first view: the saved view (columns, sort,
    filter, charts), the experiment kind and the description. Idempotent: nothing is written when
    all is already so; a saved view a person has since overwritten in the UI (*Views* > *Overwrite
    view*) is left as it is. Returns the URL fragment opening the view (append it to the UI's
    address), or None when the experiment does not exist or cannot be written to."""
    try:
        exp = client.get_experiment(str(experiment_id))
    except Exception:
        return None
    if exp is None or exp.lifecycle_stage != "active":
        return None
    tags = dict(exp.tags or {})
    state = json.dumps(view_state(), separators=(",", ":"), sort_keys=True)
    want: dict[str, str] = {}
    old = tags.get(VIEW_TAG)
    old_state = None
    if old is not None:
        try:
            old_state = json.dumps(parse_view(old), separators=(",", ":"), sort_keys=True)
        except (ValueError, TypeError):
            old_state = None
    mine = old is None or old_state is None or _sha(old_state) == tags.get(WRITTEN_TAG)
    if mine and old_state != state:
        now = created = int(time.time() * 1000)
        try:
            created = int(json.loads(old)["createdAt"]) if old else now
        except (ValueError, TypeError, KeyError):
            pass
        envelope = {"name": VIEW_NAME, "createdAt": created, "updatedAt": now, "state": state}
        want[VIEW_TAG] = json.dumps(envelope, separators=(",", ":"))
        want[WRITTEN_TAG] = _sha(state)
    if tags.get(KIND_TAG) is None:  # a kind a person chose is theirs
        want[KIND_TAG] = KIND
    if not tags.get(NOTE_TAG):  # so is a description they wrote
        want[NOTE_TAG] = NOTE
    try:
        for key, value in want.items():
            client.set_experiment_tag(str(experiment_id), key, value)
    except Exception:
        return None
    return view_url(str(experiment_id))
