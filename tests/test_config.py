"""--set values (one text encoding, `format_value` / `parse_value`, for the CLI and the
workflow's trainer arguments) and a run's identity (dsr.config.identity)."""

from __future__ import annotations

import pytest

from dsr.config import (
    ADDED_LATER,
    ConfigError,
    RunConfig,
    TrainConfig,
    format_value,
    identity,
    parse_value,
    split_overrides,
)
from dsr.harness.resolve import resolve


@pytest.mark.parametrize("value, typ, text", [
    (None, float | None, "none"),
    (True, bool, "true"),
    (False, bool, "false"),
    (3, int, "3"),
    (None, int | None, "none"),
    (0.05, float, "0.05"),
    (1e-3, float, "0.001"),
    ("first900", str, "first900"),
])
def test_format_then_parse_is_the_identity(value, typ, text):
    assert format_value(value) == text
    assert parse_value("key", format_value(value), typ) == value


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "NaN", "Infinity"])
def test_non_finite_numbers_are_refused(raw):
    with pytest.raises(ConfigError, match=f"--set v_th={raw}: expected a finite number"):
        parse_value("v_th", raw, float)


def run_config(**changes) -> RunConfig:
    fields = dict(method="dsr-if", dataset="digits", arch="preact_resnet8", time_steps=4, seed=0,
                  mode="fast", train=TrainConfig(epochs=6), params={"v_th": 6.0})
    return RunConfig(**{**fields, **changes})


def test_identity_is_every_setting_that_changes_a_result() -> None:
    base = run_config()
    for changed in (dict(seed=1), dict(mode="exact"), dict(train=TrainConfig(epochs=7)),
                    dict(params={"v_th": 2.0}), dict(train=TrainConfig(epochs=6, test_subset=9)),
                    dict(plugins={"method": "mine:DSR"}), dict(source="0123456789abcdef")):
        assert run_config(**changed).hash != base.hash, changed
    # where the data lives, the device, latency repeats: the same run
    for same in ("data_root", "device", "latency_batches"):
        value = {"data_root": "/elsewhere", "device": "cpu", "latency_batches": 9}[same]
        train = TrainConfig(epochs=6, **{same: value})
        assert run_config(train=train).hash == base.hash
    assert set(identity(base)) == {"method", "dataset", "arch", "time_steps", "seed", "mode",
                                   "train", "params"}


def test_fields_added_later_keep_earlier_hashes() -> None:
    """A run recorded before `plugins` and `source` existed keeps its hash (and folder)."""
    recorded = {k: v for k, v in run_config().to_dict().items() if k not in ADDED_LATER}
    assert RunConfig.from_dict(recorded).hash == run_config().hash
    # a record that still carries a retired field (the fail_at_epoch test hook) reads back
    recorded["train"] = {**recorded["train"], "fail_at_epoch": None}
    assert RunConfig.from_dict(recorded) == run_config()
    # a method hyperparameter added later (sg-bptt's tdBN), at the value that reproduces the
    # earlier runs, leaves their hash alone; set otherwise, it is another run
    old = run_config(method="sg-bptt", params={"alpha": 2.0})
    new = run_config(method="sg-bptt", params={"alpha": 2.0, "tdbn": False, "tdbn_alpha": 1.0})
    assert new.hash == old.hash
    assert run_config(method="sg-bptt", params={"alpha": 2.0, "tdbn": True}).hash != old.hash


def test_repeated_set_key_and_seed_out_of_range_are_refused() -> None:
    with pytest.raises(ConfigError, match="--set lr is given twice"):
        split_overrides(["lr=0.1", "epochs=2", "lr=0.2"])
    with pytest.raises(ConfigError, match=r"seed must be in \[0, 2\*\*32\)"):
        run_config(seed=2**64)


def test_dataset_settings_are_the_dataset_s_params_and_keep_earlier_hashes() -> None:
    """CIFAR10-DVS's frames, dvs_split and dvs_reader are its own Params (`data_params`), set
    with --set like a method's; a dataset without them refuses them; runs keep the hashes they
    had when these were TrainConfig fields (pinned: computed by the code before the change), and
    a record of that time reads back with them in data_params."""
    overrides = {"frames": "10", "dvs_reader": "spikingjelly", "dvs_split": "last900"}
    cfg, _ = resolve("dsr-if", "cifar10_dvs", 4, 0, overrides=overrides)
    assert cfg.data_params == {"frames": 10, "dvs_split": "last900", "dvs_reader": "spikingjelly"}
    assert cfg.hash == "cc6539793bc519dc"
    assert resolve("dsr-if", "cifar10_dvs", 4, 0)[0].hash == "22e118fea41c49ed"
    assert resolve("dsr-if", "digits", 4, 0)[0].hash == "b7a01286a10119bb"
    old = cfg.to_dict()
    old["train"] = {**old["train"], **old.pop("data_params")}
    assert RunConfig.from_dict(old) == cfg
    with pytest.raises(ConfigError, match="unknown key.*frames.*on digits"):
        resolve("dsr-if", "digits", 4, 0, overrides={"frames": "10"})
    with pytest.raises(ConfigError, match="dvs_split must be one of first900, last900"):
        resolve("dsr-if", "cifar10_dvs", 4, 0, overrides={"dvs_split": "random"})
    with pytest.raises(ConfigError, match="frames must be >= 1, got 0"):
        resolve("dsr-if", "cifar10_dvs", 4, 0, overrides={"frames": "0"})
