"""The pip lock and environment.yml name the same direct dependencies at compatible versions."""


import yaml
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dsr import REPO_ROOT as ROOT


def _requirements(lines: list[str]) -> dict[str, Requirement]:
    reqs = [Requirement(line) for line in lines if line.strip() and not line.startswith("#")]
    return {canonicalize_name(r.name): r for r in reqs}


def _lock() -> dict[str, str]:
    pins = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert version, f"requirements.lock line {line!r} is not pinned with =="
            pins[canonicalize_name(name)] = version.strip()
    return pins


def _pip_section() -> list[str]:
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    return next(d["pip"] for d in env["dependencies"] if isinstance(d, dict) and "pip" in d)


def _environment() -> dict[str, Requirement]:
    return _requirements([line for line in _pip_section() if not line.startswith("-")])


def test_both_installs_put_the_suite_itself_on_the_path():
    """`make venv` and the conda environment install the project, editable: dsr, baselines and
    the workflow's library import by name from the rules, their scripts, benches and tests."""
    assert "-e ." in _pip_section()
    assert "--editable ." in (ROOT / "Makefile").read_text()


def test_environment_names_exactly_the_direct_dependencies():
    direct = _requirements((ROOT / "requirements.in").read_text().splitlines())
    env = _environment()
    assert set(env) == set(direct), set(env) ^ set(direct)


def test_every_environment_package_is_locked_at_a_compatible_version():
    lock = _lock()
    for name, req in _environment().items():
        assert name in lock, f"{name} is in environment.yml but not in requirements.lock"
        assert req.specifier.contains(lock[name], prereleases=True), (name, str(req), lock[name])


def test_lock_pins_the_cpu_usable_torch_pair():
    lock = _lock()
    assert (lock["torch"], lock["torchvision"]) == ("2.14.1", "0.29.1")
