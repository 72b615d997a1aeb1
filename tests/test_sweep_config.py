"""Sweep entries: the study grid, YAML and TOML sweep files, and their validation before any run."""

from __future__ import annotations

import textwrap

import mlflow
import pytest
from mlflow.tracking import MlflowClient
from typer.testing import CliRunner

from biaslab.cli import app
from biaslab.errors import ConfigError
from biaslab.sweep import SweepStatus
from biaslab.sweep_entries import build_sweep_configs, grid_spec, read_sweep_file
from biaslab.sweep_runs import absolute_tracking_uri, config_key, sweep_key

STUDY = [
    ("none", "", 0.0),
    ("mislabel", "", 30.0),
    ("mislabel", "", 60.0),
    ("mislabel", "", 80.0),
    ("size", "cat", 30.0),
    ("size", "cat", 60.0),
    ("size", "cat", 90.0),
    ("size", "ship", 60.0),
    ("gaussian", "cat", 60.0),
]


def write(tmp_path, name: str, text: str):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_study_grid_on_cifar10(plugins):
    configs = build_sweep_configs(plugins, grid_spec("study"), {"preset": "paper"})

    assert [(config.bias, config.cls, config.pct) for config in configs] == STUDY
    assert {config.dataset for config in configs} == {"cifar10"}
    assert {config.model for config in configs} == {"resnet20"}
    assert configs[-1].options["var"] == 0.02


def test_study_grid_maps_classes_on_digits(plugins):
    configs = build_sweep_configs(plugins, grid_spec("study"), {"preset": "quick"})

    # cat and ship are classes 3 and 8 of CIFAR-10, so they stand for the digits 3 and 8
    expected = [(bias, {"cat": "3", "ship": "8"}.get(cls, cls), pct) for bias, cls, pct in STUDY]
    assert [(config.bias, config.cls, config.pct) for config in configs] == expected
    assert {config.dataset for config in configs} == {"digits"}


def test_study_grid_for_both_models(plugins):
    configs = build_sweep_configs(plugins, grid_spec("study"), {"preset": "quick"}, ["resnet20", "sharesnet20"])

    assert len(configs) == 18
    assert [config.model for config in configs] == ["resnet20"] * 9 + ["sharesnet20"] * 9
    assert len({config_key(config) for config in configs}) == 18


def test_unknown_grid_lists_grids():
    with pytest.raises(ConfigError, match=r"unknown grid 'studdy'; available grids: study"):
        grid_spec("studdy")


def test_yaml_file_settings_and_precedence(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        preset: quick
        epochs: 3
        seed: 4
        runs:
          - bias: none
          - bias: mislabel
            pct: 30
            epochs: 5
          - {bias: gaussian, cls: 3, pct: 60, var: 0.05, run_name: noisy threes}
    """)

    configs = build_sweep_configs(plugins, read_sweep_file(path), {"seed": "7"})

    assert [config.epochs for config in configs] == [3, 5, 3]
    assert [config.seed for config in configs] == [7, 7, 7]
    assert configs[2].options["var"] == 0.05
    assert configs[2].run_name == "noisy threes"
    assert configs[1].pct == 30.0


def test_yaml_typo_names_line_and_key(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        preset: quick
        runs:
          - bias: none
          - bias: mislabel
            pcr: 30
    """)

    with pytest.raises(ConfigError) as caught:
        build_sweep_configs(plugins, read_sweep_file(path))

    message = str(caught.value)
    assert message.startswith(f"{path} line 5: unknown key 'pcr'")
    assert "did you mean 'pct'?" in message


def test_yaml_unknown_bias_names_line(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        preset: quick
        runs:
          - bias: none
          - bias: mislabell
            pct: 30
    """)

    with pytest.raises(ConfigError) as caught:
        build_sweep_configs(plugins, read_sweep_file(path))

    message = str(caught.value)
    assert message.startswith(f"{path} line 4: unknown bias 'mislabell'")
    assert "mislabel" in message.split("available:")[1]


def test_yaml_bad_pct_names_line(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        preset: quick
        runs:
          - bias: size
            cls: 3
            pct: 130
    """)

    with pytest.raises(ConfigError, match=rf"^{path} line 5: pct=130 is outside \[0, 100\]"):
        build_sweep_configs(plugins, read_sweep_file(path))


def test_yaml_unknown_class_names_line(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        preset: quick
        runs:
          - bias: size
            pct: 30
            cls: cat
    """)

    with pytest.raises(ConfigError, match=rf"^{path} line 5: unknown class 'cat'"):
        build_sweep_configs(plugins, read_sweep_file(path))


def test_yaml_duplicate_key_rejected(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        runs:
          - bias: mislabel
            pct: 30
            pct: 60
    """)

    with pytest.raises(ConfigError, match=rf"^{path} line 4: key 'pct' appears twice .*first at {path} line 3"):
        read_sweep_file(path)


def test_yaml_option_of_other_bias_rejected(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        preset: quick
        runs:
          - bias: mislabel
            pct: 30
            var: 0.02
    """)

    with pytest.raises(ConfigError, match=rf"^{path} line 5: unknown key 'var'.*bias 'mislabel': none"):
        build_sweep_configs(plugins, read_sweep_file(path))


def test_yaml_shared_typo_rejected(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        preset: quick
        epoch: 2
        runs:
          - bias: none
    """)

    with pytest.raises(ConfigError, match=rf"^{path} line 2: unknown shared setting 'epoch' \(did you mean 'epochs'\?\)"):
        build_sweep_configs(plugins, read_sweep_file(path))


def test_yaml_without_runs_rejected(tmp_path):
    path = write(tmp_path, "sweep.yaml", "preset: quick\n")

    with pytest.raises(ConfigError, match="has no 'runs:' list"):
        read_sweep_file(path)


def test_entry_experiment_rejected(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        runs:
          - bias: none
            experiment: other
    """)

    with pytest.raises(ConfigError, match=rf"^{path} line 3: an entry cannot set 'experiment'"):
        build_sweep_configs(plugins, read_sweep_file(path))


def test_duplicate_configurations_rejected(tmp_path, plugins):
    path = write(tmp_path, "sweep.yaml", """
        preset: quick
        runs:
          - {bias: mislabel, pct: 30}
          - {bias: mislabel, pct: 30.0}
    """)

    with pytest.raises(ConfigError, match=rf"^{path} line 4 gives the same configuration as {path} line 3"):
        build_sweep_configs(plugins, read_sweep_file(path))


def test_toml_file_settings(tmp_path, plugins):
    path = write(tmp_path, "sweep.toml", """
        preset = "quick"
        epochs = 2

        [[runs]]
        bias = "none"

        [[runs]]
        bias = "size"
        cls = "3"
        pct = 90
    """)

    configs = build_sweep_configs(plugins, read_sweep_file(path))

    assert [(config.bias, config.cls, config.pct, config.epochs) for config in configs] == [
        ("none", "", 0.0, 2),
        ("size", "3", 90.0, 2),
    ]


def test_toml_bad_pct_names_key_path(tmp_path, plugins):
    path = write(tmp_path, "sweep.toml", """
        preset = "quick"

        [[runs]]
        bias = "none"

        [[runs]]
        bias = "size"
        cls = "3"
        pct = 130
    """)

    with pytest.raises(ConfigError, match=rf"^{path} key runs\[1\]\.pct: pct=130 is outside"):
        build_sweep_configs(plugins, read_sweep_file(path))


def test_toml_typo_names_key_path(tmp_path, plugins):
    path = write(tmp_path, "sweep.toml", """
        [[runs]]
        bias = "mislabel"
        pct = 30
        sead = 2
    """)

    with pytest.raises(ConfigError, match=rf"^{path} key runs\[0\]\.sead: unknown key 'sead' \(did you mean 'seed'\?\)"):
        build_sweep_configs(plugins, read_sweep_file(path))


def test_unknown_extension_rejected(tmp_path):
    path = write(tmp_path, "sweep.json", "{}")

    with pytest.raises(ConfigError, match="unknown extension '.json'; use .yaml, .yml or .toml"):
        read_sweep_file(path)


def test_sweep_key_ignores_order(plugins):
    configs = build_sweep_configs(plugins, grid_spec("study"), {"preset": "quick"})

    assert sweep_key(configs) == sweep_key(list(reversed(configs)))
    assert sweep_key(configs) != sweep_key(configs[:-1])
    assert config_key(configs[0]) == config_key(build_sweep_configs(plugins, grid_spec("study"), {"preset": "quick"})[0])


def test_relative_sqlite_uri_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(mlflow, "get_tracking_uri", lambda: "sqlite:///mlflow.db")

    assert absolute_tracking_uri() == f"sqlite:///{tmp_path.resolve() / 'mlflow.db'}"


def test_status_line_counts_children():
    status = SweepStatus(total=3, skipped=1, enabled=False)

    assert status.line().startswith("1/3 children done (0 failed, 1 skipped)")
    assert status.line().endswith("about unknown left")


def test_cli_bad_entry_starts_no_run(tracking, tmp_path):
    path = write(tmp_path, "sweep.yaml", """
        preset: quick
        epochs: 2
        runs:
          - bias: none
          - {bias: mislabel, pct: 30}
          - {bias: size, cls: 3, pct: -5}
    """)

    result = CliRunner().invoke(app, ["sweep", "--config", str(path), "--experiment", "never", "--quiet"])

    assert result.exit_code == 2
    assert f"{path} line 6: pct=-5 is outside [0, 100]" in result.output
    assert MlflowClient().get_experiment_by_name("never") is None


def test_cli_unknown_grid_lists_grids(tracking):
    result = CliRunner().invoke(app, ["sweep", "--grid", "paper", "--quiet"])

    assert result.exit_code == 2
    assert "unknown grid 'paper'; available grids: study" in result.output


def test_cli_grid_and_config_rejected(tracking, tmp_path):
    result = CliRunner().invoke(app, ["sweep", "--grid", "study", "--config", str(tmp_path / "x.yaml")])

    assert result.exit_code == 2
    assert "give either --grid or --config, not both" in result.output


def test_cli_failed_children_exit_1(tracking, tmp_path):
    missing = tmp_path / "no-such-cifar"
    path = write(tmp_path, "sweep.yaml", f"""
        preset: quick
        dataset: cifar10
        data_dir: {missing}
        landscape: false
        runs:
          - bias: none
          - {{bias: mislabel, pct: 30}}
    """)

    result = CliRunner().invoke(app, ["sweep", "--config", str(path), "--experiment", "broken", "--quiet"])

    assert result.exit_code == 1
    experiment = MlflowClient().get_experiment_by_name("broken")
    runs = MlflowClient().search_runs([experiment.experiment_id])
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags]
    assert len(children) == 2
    assert {child.info.status for child in children} == {"FAILED"}
    assert "2 of 2 child runs failed" in result.output
    for child in children:
        assert child.info.run_id in result.output
        assert str(missing) in child.data.tags["biaslab.error"]
