"""bench/ppi.py and bench/coverage.py in small: CI runs each at a small R to prove that the scripts whose full-R
figures the README and the closing notes quote still run and print what they say. Never asserts on time."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _run(*args: str) -> list[str]:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT, timeout=600, check=True)
    return out.stdout.splitlines()


@pytest.mark.slow
def test_ppi_bench_prints_every_cell_and_the_reference_ratio():
    lines = _run("bench/ppi.py", "--R", "250", "--shapes", "drawbench", "--jobs", "1")
    cells = [line.split() for line in lines if line.startswith("drawbench ")]
    assert len(cells) == 2 * 4 * 3  # s × ρ × N/n
    for cell in cells:
        rho, gain, limit, design_effect, independent = (float(cell[i]) for i in (2, 6, 7, 8, 9))
        assert design_effect > 1  # raters answer several comparisons each
        assert 1.0 <= limit <= independent  # the design's limit never above the independent answers'
        if rho == 0:  # a useless judge: no limit to reach, and it costs (or seems to save) under 2%
            assert limit == 1.0 and 0.98 <= gain <= 1.02
    match = re.fullmatch(r"ppi gain / limit = (\d+\.\d{3})", lines[-1])
    assert match and 0.85 < float(match.group(1)) < 1.1


@pytest.mark.slow
def test_coverage_bench_prints_every_scenario_and_the_range():
    lines = _run("bench/coverage.py", "--R", "200")
    rows = [line.split() for line in lines if line.split()[1:2] in (["calibration"], ["edge"])]
    assert len(rows) == 17
    assert all(int(row[5]) == 0 for row in rows)  # the default interval is never zero width
    match = re.fullmatch(r"default interval coverage = (\d\.\d{4})-(\d\.\d{4})", lines[-1])
    assert match and 0.85 < float(match.group(1)) <= float(match.group(2)) <= 1.0


@pytest.mark.slow
def test_bca_bench_prints_both_bounds_per_scope_and_the_time_ratio():
    lines = _run("bench/bca.py", "--B", "200", "--studies", "3")
    scopes = [line for line in lines if " ours [" in line and " scipy [" in line]
    assert len(scopes) == 12  # overall and DrawBench's 11 categories
    difference = float(next(line for line in lines if line.startswith("largest difference")).split()[5])
    assert difference < 0.03  # the same stratified BCa, within Monte-Carlo error
    assert re.fullmatch(r"scipy / ours time = \d+\.\d", lines[-1])
