"""bench/gpu.py --quick: the CI smoke run of the accelerator benchmark (CPU, tiny shapes). It checks that every
section runs and reports its figures as JSON; it never asserts on time."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_gpu_benchmark_quick_mode_prints_every_section_as_json():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--quick"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=True,
    )
    report = json.loads(out.stdout)

    assert report["quick"] is True and report["device"] == "cpu"
    training = report["efficient_vs_standard"]
    assert abs(training["efficient"]["params"] / training["standard"]["params"] - 1) < 0.05
    assert training["speed_ratio"] > 0
    sampling = report["base64_sampling"]
    assert sampling["eager_images_per_s"] > 0 and sampling["compiled_images_per_s"] is None
    versus = report["if_vs_diffusers"]
    assert versus["imagen_core_images_per_s"] > 0 and versus["diffusers_images_per_s"] > 0
    assert versus["ratio"] == pytest.approx(versus["imagen_core_images_per_s"] / versus["diffusers_images_per_s"])
