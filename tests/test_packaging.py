"""Packaging: pyproject declares the dependencies, extras and console scripts; requirements.txt pins exactly the same
set; the web image's extras leave torch out; and `pip install -e ".[dev]"` works in a fresh virtual environment.

The fresh-environment test runs offline: the new environment sees this project's installed packages through a .pth
file, so pip resolves every declared requirement (extras included) against them with --no-index instead of
downloading, and installs the project itself in editable mode.
"""

import subprocess
import sys
import sysconfig
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
GEN_ONLY = {"torch", "diffusers", "transformers", "accelerate", "safetensors"}


def pins(lines) -> dict[str, str]:
    """{canonical name: the requirement as written} of requirement lines (comments, blanks, self-references out)."""
    found = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        requirement = Requirement(line)
        if canonicalize_name(requirement.name) == "drawbench":
            continue
        name = canonicalize_name(requirement.name)
        assert name not in found, f"{name} is listed twice"
        found[name] = str(requirement)
    return found


def declared(*extras: str) -> dict[str, str]:
    lines = list(PYPROJECT["dependencies"])
    for extra in extras:
        lines += PYPROJECT["optional-dependencies"][extra]
    return pins(lines)


def test_requirements_txt_pins_exactly_what_pyproject_declares():
    required = pins((ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines())
    everything = declared(*PYPROJECT["optional-dependencies"])

    assert required == everything, (
        f"only in requirements.txt: {sorted(required.keys() - everything.keys())}; "
        f"only in pyproject.toml: {sorted(everything.keys() - required.keys())}; "
        f"pinned differently: {sorted(n for n in required.keys() & everything.keys() if required[n] != everything[n])}"
    )


def test_every_requirement_is_pinned_exactly():
    for requirement in declared(*PYPROJECT["optional-dependencies"]).values():
        assert "==" in requirement and "," not in requirement, requirement


def test_torch_is_pinned_exactly_in_the_gen_extra_and_nowhere_else():
    assert declared("gen")["torch"] == "torch==2.13.0"
    assert GEN_ONLY.isdisjoint(declared("web", "s3"))
    assert "drawbench[web,s3,gen]" in PYPROJECT["optional-dependencies"]["dev"]


def test_the_console_scripts_point_at_callables():
    import importlib

    for script, target in PYPROJECT["scripts"].items():
        module, _, attribute = target.partition(":")
        assert callable(getattr(importlib.import_module(module), attribute)), script


def test_the_web_image_installs_the_web_extras_and_the_worker_image_the_gen_ones():
    install = (ROOT / "docker" / "install.sh").read_text(encoding="utf-8")
    assert 'web) extras="web,s3"' in install and 'worker) extras="gen,s3"' in install
    dockerfile = (ROOT / "Dockerfile").read_text(encoding="utf-8")
    web_stage, worker_stage = dockerfile.split("AS web", 1)[1].split("AS worker", 1)
    assert "docker/install.sh web" in web_stage and "install.sh worker" not in web_stage
    assert "docker/install.sh worker" in worker_stage
    assert 'CMD ["docker/start-web.sh"]' in web_stage and 'CMD ["docker/start-worker.sh"]' in worker_stage
    assert "ARG WORKER_BASE=nvidia/cuda:" in dockerfile and "FROM ${WORKER_BASE} AS worker" in dockerfile


def test_the_compose_file_runs_every_service_with_the_images_of_the_dockerfile():
    compose = yaml.safe_load((ROOT / "compose.yaml").read_text(encoding="utf-8"))
    services = compose["services"]

    assert {"web", "worker", "db", "redis", "minio", "caddy"} <= services.keys()
    assert services["web"]["build"]["target"] == "web" and services["worker"]["build"]["target"] == "worker"
    # --scale worker=N needs a worker without a fixed name or published port.
    assert "container_name" not in services["worker"] and "ports" not in services["worker"]
    for name in ("web", "worker"):
        environment = services[name]["environment"]
        assert environment["DRAWBENCH_STORAGE_BACKEND"] == "s3" and environment["DATABASE_URL"].startswith("postgres")
    for name in ("db", "redis", "minio"):
        for port in services[name].get("ports", []):
            assert not port.startswith(("0.0.0.0", "5432", "6379", "9000")), f"{name} published to every address"


def test_the_docker_scripts_are_executable():
    for name in ("install.sh", "start-web.sh", "start-worker.sh", "new-env.sh"):
        assert (ROOT / "docker" / name).stat().st_mode & 0o111, name


@pytest.mark.slow
def test_pip_install_editable_with_dev_extras_works_in_a_fresh_venv(tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    site_packages = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    Path(site_packages, "zz_project_packages.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    install = subprocess.run(
        [python, "-m", "pip", "install", "--no-index", "--no-build-isolation", "-e", ".[dev]"],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
    )  # fmt: skip

    assert install.returncode == 0, install.stdout + install.stderr
    assert "Successfully installed drawbench-" in install.stdout
    for script in PYPROJECT["scripts"]:
        assert (venv / "bin" / script).exists(), script
    check = subprocess.run(
        [venv / "bin" / "drawbench", "check"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
        env={"PATH": "/usr/bin:/bin", "DRAWBENCH_VAR_DIR": str(tmp_path / "var"), "HOME": str(tmp_path)},
    )  # fmt: skip
    assert check.returncode == 0 and "no issues" in check.stdout, check.stderr
    metadata = subprocess.run(
        [python, "-c", "import importlib.metadata as m; d = m.distribution('drawbench'); "
         "print(sorted(d.metadata.get_all('Provides-Extra'))); print(len(d.requires))"],
        capture_output=True, text=True, check=True,
    ).stdout.split("\n")  # fmt: skip
    assert metadata[0] == "['dev', 'gen', 's3', 'web']"
    assert int(metadata[1]) == sum(len(v) for v in PYPROJECT["optional-dependencies"].values()) + len(
        PYPROJECT["dependencies"]
    )
