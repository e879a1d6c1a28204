"""The conformance suite has teeth: each deliberately broken backend fails it, in the
checks that should catch it, and only in its broken (fused) path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("array_api_strict")

MUTANTS_DIR = Path(__file__).parent / "mutants"

#: backend -> tests (by function name) that must fail for it
EXPECTED = {
    "mutant_diagonal": {
        "test_softmax_backward_is_the_full_jacobian",
        "test_backward_matches_reference",
        "test_backward_matches_central_finite_differences",
    },
    "mutant_device": {"test_matches_high_precision_reference", "test_every_axis_form"},
    "mutant_dtype": {"test_matches_high_precision_reference", "test_dtype_argument_casts_first"},
    "mutant_accuracy": {"test_matches_high_precision_reference", "test_long_rows_match_reference"},
    "mutant_mutates": {"test_inputs_are_never_mutated"},
    "mutant_log": {
        "test_log_softmax_is_accurate_for_large_negative_logits",
        "test_extreme_magnitudes_are_stable",
    },
}


@pytest.fixture(scope="module")
def mutant_results(tmp_path_factory) -> dict:
    """One `softmax-dispatch check --json` over all mutants, in a subprocess that finds
    them through an entry point of a throw-away distribution."""
    root = tmp_path_factory.mktemp("mutant_dist")
    info = root / "sd_mutants-0.0.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: sd-mutants\nVersion: 0.0.0\n")
    (info / "entry_points.txt").write_text("[softmax_dispatch]\nmutants = sd_mutants\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root), str(MUTANTS_DIR), env.get("PYTHONPATH", "")])
    cmd = [sys.executable, "-m", "softmax_dispatch", "check", "--json"]
    for name in EXPECTED:
        cmd += ["--backend", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 1, f"the suite did not fail on mutants:\n{proc.stderr[-3000:]}"
    data = json.loads(proc.stdout)
    return {row["backend"]: row for row in data["targets"]}


def _failed_functions(row: dict, path: str) -> set[str]:
    names = set()
    for nodeid in row["failures"]:
        func, _, params = nodeid.split("::")[-1].partition("[")
        if f"-{path}" in params:
            names.add(func)
    return names


@pytest.mark.parametrize("mutant", sorted(EXPECTED))
def test_each_mutant_is_caught_by_the_right_checks(mutant_results, mutant):
    row = mutant_results[mutant]
    caught = _failed_functions(row, "fused")
    missing = EXPECTED[mutant] - caught
    assert not missing, f"{mutant} slipped past {sorted(missing)}; caught by {sorted(caught)}"


@pytest.mark.parametrize("mutant", sorted(EXPECTED))
def test_generic_path_of_each_mutant_passes(mutant_results, mutant):
    assert _failed_functions(mutant_results[mutant], "generic") == set()
