"""Configurations as files (pipeline.configs): standalone unless a base is named, named by their
own file, parsed strictly, plug-in folders relative to the file; and through the `snakemake`
CLI: nothing of config/config.yaml leaks into a --configfile run."""

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dsr import REPO_ROOT as ROOT
from dsr.config import ConfigError
from pipeline.configs import load_config, read_yaml
from tests.experiments import experiment

SNAKEMAKE = str(Path(sys.executable).parent / "snakemake")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


MINE = {"name": "mine", "results_dir": "r", "tables_dir": "t",
        "published": "paper_tables/published.csv", "experiments": [experiment()]}


def test_no_configfile_is_the_default_config() -> None:
    cfg = load_config([], {}, ROOT)
    assert cfg == read_yaml(ROOT / "config" / "config.yaml")
    assert load_config([], {"results_dir": "elsewhere"}, ROOT)["results_dir"] == "elsewhere"


def test_a_configfile_is_the_whole_configuration(tmp_path: Path) -> None:
    cfg = load_config([write(tmp_path / "mine.yaml", yaml.safe_dump(MINE))], {}, ROOT)
    assert cfg == MINE  # no claims block, datasets or resources from config/config.yaml


def test_a_base_is_named_and_merged_key_by_key(tmp_path: Path) -> None:
    write(tmp_path / "base.yaml", yaml.safe_dump({
        **MINE, "name": "base", "resources": {"threads": 2, "mem_mb": 1000},
        "plugin_paths": ["plugins"]}))
    mine = write(tmp_path / "sub" / "mine.yaml",
                 "base: ../base.yaml\nname: mine\nresources: {mem_mb: 4000}\n")
    cfg = load_config([mine], {}, ROOT)
    assert cfg["name"] == "mine" and "base" not in cfg
    assert cfg["resources"] == {"threads": 2, "mem_mb": 4000}
    assert cfg["experiments"] == MINE["experiments"]
    assert cfg["plugin_paths"] == [str(tmp_path / "plugins")]  # relative to base.yaml


@pytest.mark.parametrize(("text", "expected"), [
    ("results_dir: r\nexperiments: []\n", "set `name:`"),
    ("name: a\nname: b\n", ":2: key 'name' is written twice (first on line 1); keep one"),
    ("name: a\nresources:\n  threads: 1\n  threads: 2\n", "key 'threads' is written twice"),
    ("name: a\nbase: missing.yaml\n", "missing.yaml does not exist"),
    ("name: a\nbase: self.yaml\n", "its base chain returns to itself"),
    ("name: [a\n", "not valid YAML"),
    ("- a list\n", "expected a mapping of settings"),
    ("name: a\nplugin_paths: plugins\n", "plugin_paths must be a list of folders"),
])
def test_config_file_errors_are_one_line(tmp_path: Path, text: str, expected: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config([write(tmp_path / "self.yaml", text)], {}, ROOT)
    assert expected in str(e.value) and "\n" not in str(e.value)


def test_snakemake_takes_the_file_alone_and_errors_in_one_line(tmp_path: Path) -> None:
    """Through the CLI: a config without name stops planning in one line; a complete one plans
    its own grid only (its tables folder, no digits_vth experiment of the default)."""
    nameless = write(tmp_path / "nameless.yaml", yaml.safe_dump(
        {k: v for k, v in MINE.items() if k != "name"}))
    out = subprocess.run([SNAKEMAKE, "-n", "--nolock", "--configfile", str(nameless)], cwd=ROOT,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("error: ")]
    assert len(errors) == 1 and "set `name:`" in errors[0] and "Traceback" not in out.stderr
    mine = write(tmp_path / "mine.yaml", yaml.safe_dump(
        {**MINE, "results_dir": str(tmp_path / "r"), "tables_dir": str(tmp_path / "t")}))
    out = subprocess.run([SNAKEMAKE, "-n", "-p", "--nolock", "--configfile", str(mine)],
                         cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert f"{tmp_path}/t/mine/digits.md" in out.stdout and "digits_vth" not in out.stdout
