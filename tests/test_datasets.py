"""Expectation tests on the shipped OULAD tables: hashes, row counts, columns."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path

import pandas as pd
import pytest

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
OULAD = DATASETS / "oulad"

EXPECTED = {
    "assessments.csv": (206, "8cc738fb88ad760571d6f2a23059bfee0ffcae3bcd830514c9cbd5c6d5a046f1"),
    "courses.csv": (22, "4f16eee7454b15e109b0a21a0e43be820e6846ed6f9301bb7feb5ab5ad737a75"),
    "studentAssessment.csv": (
        173_912,
        "fd5320786328d05af841ee7dd4b5871b9dada3b9fe9d6a3642b2f42635510a6e",
    ),
    "studentInfo.csv": (32_593, "7e6f3e474a5eee00639d2a414a6c7e928745823c2d2c2563ca1780145f99b0d6"),
    "studentRegistration.csv": (
        32_593,
        "0d32676285372aaf2e7a80304e5b274b4fba24313e2ca4c04317225e1ec90170",
    ),
    "vle.csv": (6_364, "d1b28303dea802ad87b4484e1196e878e06824850b9a4fe8aa34693439fe87e9"),
}

COLUMNS = {
    "assessments.csv": [
        "code_module",
        "code_presentation",
        "id_assessment",
        "assessment_type",
        "date",
        "weight",
    ],
    "courses.csv": ["code_module", "code_presentation", "module_presentation_length"],
    "studentAssessment.csv": [
        "id_assessment",
        "id_student",
        "date_submitted",
        "is_banked",
        "score",
    ],
    "studentInfo.csv": [
        "code_module",
        "code_presentation",
        "id_student",
        "gender",
        "region",
        "highest_education",
        "imd_band",
        "age_band",
        "num_of_prev_attempts",
        "studied_credits",
        "disability",
        "final_result",
    ],
    "studentRegistration.csv": [
        "code_module",
        "code_presentation",
        "id_student",
        "date_registration",
        "date_unregistration",
    ],
    "vle.csv": [
        "id_site",
        "code_module",
        "code_presentation",
        "activity_type",
        "week_from",
        "week_to",
    ],
}


def test_exactly_the_six_tables_are_shipped():
    assert sorted(p.name for p in OULAD.glob("*.csv.gz")) == sorted(f"{n}.gz" for n in EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_table_hash_rows_and_columns(name: str):
    rows, digest = EXPECTED[name]
    raw = gzip.decompress((OULAD / f"{name}.gz").read_bytes())
    assert hashlib.sha256(raw).hexdigest() == digest
    frame = pd.read_csv(OULAD / f"{name}.gz")
    assert len(frame) == rows
    assert list(frame.columns) == COLUMNS[name]


def test_datasheet_lists_every_hash_and_row_count():
    sheet = (DATASETS / "README.md").read_text(encoding="utf-8")
    for name, (rows, digest) in EXPECTED.items():
        assert digest in sheet, name
        assert f"{rows:,}" in sheet, name
    assert "CC-BY 4.0" in sheet and "doi:10.1038/sdata.2017.171" in sheet


def test_the_known_traps_are_real():
    """The datasheet's traps hold on the shipped data, so the lessons teach something true."""
    info = pd.read_csv(OULAD / "studentInfo.csv.gz")
    assert info["id_student"].nunique() == 28_785  # repeat registrations exist
    reg = pd.read_csv(OULAD / "studentRegistration.csv.gz")
    joined = info.merge(reg, on=["code_module", "code_presentation", "id_student"])
    gone = joined[joined["date_unregistration"].notna()]
    assert (gone["final_result"] == "Withdrawn").mean() > 0.95  # the leak
    assert set(info.loc[info["code_module"] == "CCC", "code_presentation"]) <= {"2014B", "2014J"}
