"""The frontier against temperature's curve: interpolation, range, bootstrap intervals."""
import numpy as np
import pandas as pd
import pytest

from antidistill.eval.experiment.config import expand_protections
from antidistill.eval.measures.frontier import frontier
from antidistill.watermark.errors import UserError


def _items(acc_teacher: dict, acc_student: dict, n_t=400, n_s=200, seeds=3):
    """Deterministic items with exactly the given accuracies (first k items correct)."""
    t = [{"protection": p, "id": i, "correct": i < round(a * n_t)} for p, a in acc_teacher.items() for i in range(n_t)]
    s = [{"student": p, "seed": sd, "id": i, "skill": "add", "correct": i < round(a * n_s)}
         for p, a in acc_student.items() for sd in range(seeds) for i in range(n_s)]
    return pd.DataFrame(t), pd.DataFrame(s)


def test_matched_difference_interpolates_temperature():
    sweeps = {"none": ("none", None, None), "temperature:t=1": ("temperature", "t", "1"),
              "temperature:t=2": ("temperature", "t", "2"), "ads:lam=0.1": ("ads", "lam", "0.1"),
              "trace:keep=answer": ("trace", None, None)}
    teacher = {"none": 0.95, "temperature:t=1": 0.95, "temperature:t=2": 0.75, "ads:lam=0.1": 0.85,
               "trace:keep=answer": 0.99}
    student = {"none": 0.70, "temperature:t=1": 0.70, "temperature:t=2": 0.50, "ads:lam=0.1": 0.40,
               "trace:keep=answer": 0.30}
    fr = frontier(*_items(teacher, student), sweeps, n_boot=300).set_index("protection")
    # temperature's curve at 0.85 is 0.60, so ads is 20 points below it
    assert fr.loc["ads:lam=0.1", "vs_temperature"] == pytest.approx(-0.20, abs=1e-9)
    assert fr.loc["ads:lam=0.1", "vs_temperature_lo"] < -0.20 < fr.loc["ads:lam=0.1", "vs_temperature_hi"] < 0
    assert fr.loc["ads:lam=0.1", "matched_share"] > 0.9
    assert fr.loc["none", "vs_temperature"] == pytest.approx(0.0, abs=1e-9)
    # 0.99 lies above temperature's best teacher accuracy: no matched comparison
    assert np.isnan(fr.loc["trace:keep=answer", "vs_temperature"])
    assert np.isnan(fr.loc["temperature:t=2", "vs_temperature"])  # the baseline itself
    assert fr.loc["ads:lam=0.1", "family"] == "ads" and fr.loc["temperature:t=2", "value"] == "2"
    assert fr.loc["ads:lam=0.1", "student_lo"] < 0.40 < fr.loc["ads:lam=0.1", "student_hi"]
    # sampled at temperature 1, the unprotected teacher is temperature's t = 1 point
    del sweeps["temperature:t=1"], teacher["temperature:t=1"], student["temperature:t=1"]
    fr = frontier(*_items(teacher, student), sweeps, none_on_curve=True, n_boot=100).set_index("protection")
    assert fr.loc["ads:lam=0.1", "vs_temperature"] == pytest.approx(-0.20, abs=1e-9)
    assert fr.loc["none", "family"] == "temperature" and np.isnan(fr.loc["none", "vs_temperature"])


def test_sweep_syntax():
    sweeps = expand_protections(["none", "unigram:gamma=0.5,delta=[1, 2.5]"])
    assert sweeps == {"none": ("none", None, None), "unigram:gamma=0.5,delta=1": ("unigram", "delta", "1"),
                      "unigram:gamma=0.5,delta=2.5": ("unigram", "delta", "2.5")}
    with pytest.raises(UserError, match="sweep one per entry"):
        expand_protections(["kgw:gamma=[0.25,0.5],delta=[1,2]"])
    with pytest.raises(UserError, match="listed twice"):
        expand_protections(["unigram:delta=[1,1.0]"])
    with pytest.raises(UserError, match="out of range|not a valid"):
        expand_protections(["unigram:gamma=[0.5,2]"])
