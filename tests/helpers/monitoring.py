"""Builders for a workspace that passes `monitored`, without running the notebooks.

They write what stages 01, 02 and 05 would (`problem.yaml`, the day-60 splits and their manifest,
`serving/requests.jsonl`) and then what stage 06 writes (`monitoring/scores.csv.gz` and
`monitoring/report.json`), from the real OULAD tables. The model is a fixed scoring rule, so no
training (and no MLflow) is needed; the monitoring figures come from `checker.monitoring`'s own
functions. Tests copy the workspace and break one thing in it.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from checker import metrics, monitoring
from tests.helpers.problem import VALID_PROBLEM
from tests.helpers.workspace import FEATURES as RAW_COLUMNS
from tests.helpers.workspace import OULAD, write_csv_gz, write_manifest

COLUMNS = [  # the day-60 split columns stage 02 writes
    *[c for c in RAW_COLUMNS if c != "at_risk"],
    "date_registration",
    "score_mean_60",
    "submitted_60",
    "submission_rate_60",
    "at_risk",
]
FEATURES = [c for c in COLUMNS if c not in {"id_student", "code_presentation", "at_risk"}]
HORIZON = 60
BUDGET = 0.3
LATENCY_BUDGET_MS = 200.0
THRESHOLDS = {
    "feature_psi_max": 0.25,
    "prediction_psi": 0.25,
    "auc_drop": 0.05,
    "latency_p95_ms": LATENCY_BUDGET_MS,
    "error_rate": 0.02,
    "concept_drift": 0.05,
}
CRITERION = (
    "the slice (module x presentation, at least 300 production rows and 100 train rows of its "
    "module) and feature with the largest concept_shift"
)
SOURCES = [
    "studentInfo",
    "studentRegistration",
    "studentAssessment",
    "assessments",
    "courses",
    "vle",
]


def day60_frame() -> pd.DataFrame:
    """One row per registration with the contract's day-60 features and the label."""
    keys = ["code_module", "code_presentation", "id_student"]
    info = pd.read_csv(OULAD / "studentInfo.csv.gz")
    registration = pd.read_csv(OULAD / "studentRegistration.csv.gz")
    frame = info.merge(registration, on=keys, how="left")
    frame = frame[~(frame["date_unregistration"] <= HORIZON)].copy()
    frame["at_risk"] = frame["final_result"].isin(["Fail", "Withdrawn"]).astype(int)
    assessments = pd.read_csv(OULAD / "assessments.csv.gz")
    submitted = pd.read_csv(OULAD / "studentAssessment.csv.gz").merge(
        assessments, on="id_assessment"
    )
    early = submitted[submitted["date_submitted"] <= HORIZON]
    per_student = early.groupby(keys).agg(
        score_mean_60=("score", "mean"), submitted_60=("id_assessment", "size")
    )
    due = (
        assessments[assessments["date"] <= HORIZON]
        .groupby(["code_module", "code_presentation"])
        .size()
        .rename("due_60")
    )
    frame = frame.merge(per_student.reset_index(), on=keys, how="left")
    frame = frame.merge(due.reset_index(), on=["code_module", "code_presentation"], how="left")
    frame["submitted_60"] = frame["submitted_60"].fillna(0).astype(int)
    frame["submission_rate_60"] = frame["submitted_60"] / frame["due_60"]
    return frame[COLUMNS].reset_index(drop=True)


def split_frames(sample_frac: float = 1.0, seed: int = 42) -> dict[str, pd.DataFrame]:
    """2013 split by student 70/15/15 into train/valid/test; all of 2014 is production."""
    frame = day60_frame()
    rng = np.random.default_rng(seed)
    if sample_frac < 1.0:
        students = np.sort(frame["id_student"].unique())
        keep = rng.choice(students, size=round(sample_frac * len(students)), replace=False)
        frame = frame[frame["id_student"].isin(keep)]
    y2013 = frame[frame["code_presentation"].str.startswith("2013")]
    students = rng.permutation(np.sort(y2013["id_student"].unique()))
    cut1, cut2 = round(0.70 * len(students)), round(0.85 * len(students))
    bucket = {"train": students[:cut1], "valid": students[cut1:cut2], "test": students[cut2:]}
    parts = {name: y2013[y2013["id_student"].isin(ids)] for name, ids in bucket.items()}
    parts["production"] = frame[frame["code_presentation"].str.startswith("2014")]
    return {name: part.reset_index(drop=True) for name, part in parts.items()}


def write_stage_splits(ws: Path, sample_frac: float = 1.0, seed: int = 42) -> dict:
    """Write the splits and a manifest with `label` and `features` (contract stage 02)."""
    parts = split_frames(sample_frac, seed)
    return write_manifest(ws, parts, SOURCES, label="at_risk", features=FEATURES)


def risk_score(frame: pd.DataFrame) -> np.ndarray:
    """A fixed scoring rule standing in for the champion: few early submissions, low scores and
    earlier attempts raise the risk."""
    z = (
        -0.04 * (frame["score_mean_60"].fillna(40) - 70)
        - 2.5 * (frame["submission_rate_60"].fillna(0).clip(0, 1.5) - 0.8)
        + 0.4 * frame["num_of_prev_attempts"]
        + 0.004 * (frame["studied_credits"] - 60)
    )
    return (1 / (1 + np.exp(-z))).round(6).to_numpy()


def write_requests(ws: Path, production: pd.DataFrame, n: int = 400, seed: int = 42) -> None:
    """A request log shaped like stage 05's: a sticky 20% canary and a few fallbacks."""
    rng = np.random.default_rng(seed)
    start = datetime(2014, 10, 1, 9, tzinfo=UTC)
    lines = []
    for i, student in enumerate(production["id_student"].head(n)):
        canary = int(hashlib.sha256(f"{student}".encode()).hexdigest(), 16) % 100 < 20
        fallback = i % 97 == 13
        record = {
            "time": (start + timedelta(seconds=2 * i)).isoformat(),
            "request_id": f"req-{i:05d}",
            "id_student": int(student),
            "model_version": "1" if fallback or not canary else "2",
            "alias": "champion" if fallback or not canary else "challenger",
            "latency_ms": round(float(rng.gamma(4.0, 3.0)) + (250.0 if fallback else 0.0), 3),
            "status": 200,
            "fallback": fallback,
            "fallback_reason": "latency budget exceeded" if fallback else None,
        }
        lines.append(json.dumps(record))
    (ws / "serving").mkdir(parents=True, exist_ok=True)
    (ws / "serving" / "requests.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def write_monitoring(ws: Path, manifest: dict) -> dict:
    """Score the splits, write `monitoring/scores.csv.gz` and a valid `monitoring/report.json`."""
    frames = {
        name: pd.read_csv(ws / manifest["splits"][name]["path"])
        for name in ("train", "valid", "production")
    }
    scores = pd.concat(
        [
            pd.DataFrame(
                {
                    "split": name,
                    "id_student": frame["id_student"],
                    "code_presentation": frame["code_presentation"],
                    "y_true": frame["at_risk"],
                    "y_score": risk_score(frame),
                }
            )
            for name, frame in frames.items()
        ],
        ignore_index=True,
    )
    write_csv_gz(scores, ws / monitoring.SCORES)
    scores = pd.read_csv(ws / monitoring.SCORES)
    reference, current = frames["train"], frames["production"]
    features = {}
    for column in manifest["features"]:
        ref, cur = reference[column], current[column]
        ks = None
        if metrics.is_numeric(ref) and metrics.is_numeric(cur):
            ks = ks_2samp(ref.dropna(), cur.dropna())
        features[column] = {
            "psi": metrics.psi(ref, cur),
            "ks_stat": None if ks is None else float(ks.statistic),
            "ks_pvalue": None if ks is None else float(ks.pvalue),
        }
    by_split = {name: part for name, part in scores.groupby("split")}
    prediction_psi = metrics.psi(by_split["train"]["y_score"], by_split["production"]["y_score"])
    decay = [
        {
            "presentation": str(presentation),
            "roc_auc": metrics.roc_auc(part["y_true"], part["y_score"]),
            "recall_at_budget": metrics.recall_at_budget(part["y_true"], part["y_score"], BUDGET),
            "rows": len(part),
        }
        for presentation, part in by_split["production"].groupby("code_presentation")
    ]
    prediction_psi_by_presentation = {
        str(presentation): metrics.psi(by_split["train"]["y_score"], part["y_score"])
        for presentation, part in by_split["production"].groupby("code_presentation")
    }
    calibration = [
        {
            "presentation": str(presentation),
            "bins": metrics.calibration_bins(part["y_true"], part["y_score"]),
        }
        for presentation, part in by_split["production"].groupby("code_presentation")
    ]
    rows = monitoring.slice_table(
        reference,
        current,
        by_split["production"]["y_score"].to_numpy(),
        manifest["features"],
        "at_risk",
        BUDGET,
    )
    write_slices(ws, rows)
    best = monitoring.strongest_shift(rows)
    concept_drift = {
        "feature": best["feature"],
        "slice": {k: best[k] for k in monitoring.SLICE_KEYS},
        "criterion": CRITERION,
        "min_rows": monitoring.MIN_SLICE_ROWS,
        "min_reference_rows": monitoring.MIN_REFERENCE_ROWS,
        **{k: best[k] for k in ("rows", "psi", "relation_auc_reference", "relation_auc")},
        "concept_shift": best["concept_shift"],
    }
    valid_auc = metrics.roc_auc(by_split["valid"]["y_true"], by_split["valid"]["y_score"])
    records = [json.loads(line) for line in (ws / monitoring.REQUESTS).read_text().splitlines()]
    serving = {
        "p95_ms": metrics.percentile([r["latency_ms"] for r in records], 95),
        "error_rate": monitoring.error_rate(records),
    }
    values = {
        "feature_psi_max": max(f["psi"] for f in features.values()),
        "prediction_psi": prediction_psi,
        "auc_drop": valid_auc - min(d["roc_auc"] for d in decay),
        "latency_p95_ms": serving["p95_ms"],
        "error_rate": serving["error_rate"],
        "concept_drift": best["concept_shift"],
    }
    alerts = [
        {
            "rule": rule,
            "value": value,
            "threshold": THRESHOLDS[rule],
            "fired": value > THRESHOLDS[rule],
        }
        for rule, value in values.items()
    ]
    fired = {a["rule"] for a in alerts if a["fired"]}
    decision = (
        "rollback" if fired & {"latency_p95_ms", "error_rate"} else "retrain" if fired else "keep"
    )
    report = {
        "reference": "train",
        "current": "production",
        "features": features,
        "prediction_psi": prediction_psi,
        "prediction_psi_by_presentation": prediction_psi_by_presentation,
        "decay": decay,
        "calibration": calibration,
        "concept_drift": concept_drift,
        "serving": serving,
        "alerts": alerts,
        "decision": decision,
    }
    write_report(ws, report)
    return report


def write_slices(ws: Path, rows: list[dict]) -> None:
    """`monitoring/slices.csv` as stage 06 writes it (undefined figures left empty)."""
    path = ws / monitoring.SLICES
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=list(monitoring.SLICE_COLUMNS)).to_csv(path, index=False)


def write_report(ws: Path, report: dict) -> None:
    path = ws / monitoring.REPORT
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")


def build_monitoring_workspace(ws: Path, sample_frac: float = 0.3, seed: int = 42) -> Path:
    """A workspace that passes `monitored`: stage 01/02/05 artifacts plus stage 06's."""
    ws.mkdir(parents=True, exist_ok=True)
    (ws / "problem.yaml").write_text(VALID_PROBLEM, encoding="utf-8")
    manifest = write_stage_splits(ws, sample_frac, seed)
    production = pd.read_csv(ws / manifest["splits"]["production"]["path"])
    write_requests(ws, production, seed=seed)
    write_monitoring(ws, manifest)
    return ws
