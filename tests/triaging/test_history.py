"""Patient history: the CSV row wins over the DICOM header, which fills in what the CSV lacks."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from medlens.errors import MedlensError
from medlens.triaging.history import history_for, load_history

DICOM = {"PatientAge": "054Y", "PatientSex": "M", "StudyDate": "20250314", "StudyTime": "093000.25"}


def write(tmp_path, text, name="history.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_csv_row_wins_over_dicom_and_dicom_fills_the_rest(tmp_path):
    hist = load_history(
        write(
            tmp_path,
            "patient_id,age,sex,prior_positive,referral_priority,smoker\nP1,70,F,2025-01,STAT,yes\nP2,,,,,\n",
        )
    )
    assert list(hist["patient_id"]) == ["P1", "P2"]
    got = history_for({"study": "s1", "patient_id": "P1", "dicom": DICOM}, hist)
    assert got["age"] == 70.0 and got["sex"] == "F"
    assert got["prior_positive"] == date(2025, 1, 1) and got["referral_priority"] == "stat"
    assert got["smoker"] == "yes" and got["sources"]["age"] == "history"
    assert got["study_time"] == datetime(2025, 3, 14, 9, 30, 0)  # no study_time in the record: the header's
    # P2's row is empty: the header fills in
    got = history_for({"study": "s2", "patient_id": "P2", "dicom": DICOM}, hist)
    assert got["age"] == 54.0 and got["sex"] == "M" and got["sources"]["age"] == "dicom"
    # no row at all
    got = history_for({"study": "s3", "patient_id": "P9", "dicom": {"PatientAge": "006M"}}, hist)
    assert got["age"] == 0.5 and got["prior_positive"] is None
    # the record's own study time wins over the header's
    got = history_for({"study": "s4", "study_time": "2025-03-15T08:00:00Z", "dicom": DICOM}, None)
    assert got["study_time"].isoformat() == "2025-03-15T08:00:00+00:00"


@pytest.mark.parametrize(
    ("text", "pattern"),
    [
        (
            "patient_id,referral_priority\nP1,stat\nP2,whenever\n",
            r"row 3: unknown referral_priority 'whenever'",
        ),
        ("patient_id,age\nP1,50\nP1,51\n", r"patient 'P1' more than once \(rows 2, 3\)"),
        ("patient_id,prior_positive\nP1,last spring\n", r"row 2: prior_positive 'last spring' is not a date"),
        ("patient_id,age\nP1,old\n", r"row 2: age 'old'"),
        ("patient,age\nP1,50\n", "no patient_id column"),
    ],
)
def test_bad_history_rows_are_refused_naming_the_file(tmp_path, text, pattern):
    path = write(tmp_path, text)
    with pytest.raises(MedlensError, match=pattern) as err:
        load_history(path)
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_a_bad_record_study_time_is_refused():
    with pytest.raises(MedlensError, match="not an ISO 8601 time"):
        history_for({"study": "s", "study_time": "yesterday"}, None)


def test_prior_positive_dates_after_the_worklist_time_are_reported_or_refused(tmp_path):
    from medlens.triaging.history import check_prior_dates

    now = datetime(2026, 12, 3, 12, 0)
    mixed = write(tmp_path, "patient_id,prior_positive\nP1,2025-03\nP2,2099-01-01\nP3,\n")
    issues = check_prior_dates(load_history(mixed), now, mixed)
    assert issues == [
        f"history CSV {mixed} row 3: prior_positive 2099-01-01 is after 2026-12-03, so it is no prior "
        "finding; it is not counted (fix the date)"
    ]
    only_future = write(tmp_path, "patient_id,prior_positive\nP1,2099-01-01\nP2,\n", "future.csv")
    with pytest.raises(MedlensError, match=r"future.csv: every prior_positive date is after 2026-12-03"):
        check_prior_dates(load_history(only_future), now, only_future)
    assert check_prior_dates(load_history(write(tmp_path, "patient_id\nP1\n", "none.csv")), now, "x") == []
