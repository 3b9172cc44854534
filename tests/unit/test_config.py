"""Configuration: defaults < YAML file < environment < explicit overrides, strictly validated."""

from __future__ import annotations

from pathlib import Path
from typing import get_origin

import pytest
from pydantic import ValidationError

from lstm_pipeline.config import (
    _env_values,
    ModelConfig,
    PipelineConfig,
    load_config,
    season_length_for,
)
from lstm_pipeline.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_defaults() -> None:
    cfg = load_config(environ={})
    assert cfg == PipelineConfig()
    assert cfg.window.horizon == 12 and cfg.window.lookback is None and cfg.window.input_lengths(12) == (15, 24, 36)
    assert cfg.model.hidden_size == 32 and cfg.model.proj_size == 0 and cfg.train.ensemble is None
    assert cfg.data.freq is None and cfg.data.covariates == ()


def test_yaml_file_overrides_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  hidden_size: 32\nwindow:\n  horizon: 6\n")
    cfg = load_config(path, environ={})
    assert cfg.model.hidden_size == 32 and cfg.window.horizon == 6
    assert cfg.model.num_layers == 1 and cfg.window.lookback is None  # untouched fields keep defaults


def test_empty_yaml_file_gives_defaults(tmp_path: Path) -> None:
    assert load_config(write(tmp_path, ""), environ={}) == PipelineConfig()


def test_yaml_that_is_not_a_mapping_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expected a mapping"):
        load_config(write(tmp_path, "- 1\n- 2\n"), environ={})


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  hidden_size: 32\n  num_layers: 3\n")
    cfg = load_config(path, environ={"LSTM_PIPELINE_MODEL__HIDDEN_SIZE": "128", "UNRELATED": "x"})
    assert cfg.model.hidden_size == 128  # coerced from the string
    assert cfg.model.num_layers == 3  # the rest of the file's section survives


def test_environment_values_are_coerced() -> None:
    cfg = load_config(environ={
        "LSTM_PIPELINE_MODEL__BIDIRECTIONAL": "true",
        "LSTM_PIPELINE_LAKE__ROOT": "/srv/lake",
        "LSTM_PIPELINE_DATA__COVARIATES": "open, high,,",
    })
    assert cfg.model.bidirectional is True
    assert cfg.lake.root == "/srv/lake"
    assert cfg.data.covariates == ("open", "high")


def test_explicit_overrides_beat_the_environment_and_the_file(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  hidden_size: 32\n")
    cfg = load_config(
        path,
        overrides={"model": {"hidden_size": 16}},
        environ={"LSTM_PIPELINE_MODEL__HIDDEN_SIZE": "128", "LSTM_PIPELINE_MODEL__NUM_LAYERS": "3"},
    )
    assert cfg.model.hidden_size == 16
    assert cfg.model.num_layers == 3  # env still applies where no override


@pytest.mark.parametrize(
    "overrides",
    [{"model": {"hiden_size": 16}}, {"modle": {"hidden_size": 16}}, {"train": {"epochs": 3}}],
)
def test_unknown_keys_are_rejected(overrides: dict[str, dict[str, int]]) -> None:
    with pytest.raises(ValidationError):
        load_config(overrides=overrides, environ={})


def test_unknown_key_in_the_environment_is_rejected() -> None:
    with pytest.raises(ValidationError):
        load_config(environ={"LSTM_PIPELINE_MODEL__HIDEN_SIZE": "16"})


def test_unknown_key_in_the_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValidationError):
        load_config(write(tmp_path, "window:\n  lookbak: 12\n"), environ={})


@pytest.mark.parametrize("proj_size", [16, 17])
def test_proj_size_must_be_below_hidden_size(proj_size: int) -> None:
    with pytest.raises(ValidationError, match="proj_size"):
        ModelConfig(hidden_size=16, proj_size=proj_size)
    with pytest.raises(ValidationError, match="proj_size"):
        load_config(overrides={"model": {"hidden_size": 16, "proj_size": proj_size}}, environ={})


def test_proj_size_below_hidden_size_is_accepted() -> None:
    assert ModelConfig(hidden_size=16, proj_size=8).proj_size == 8


def test_out_of_range_values_are_rejected() -> None:
    with pytest.raises(ValidationError):
        load_config(overrides={"window": {"horizon": 0}}, environ={})
    with pytest.raises(ValidationError):
        load_config(overrides={"model": {"dropout": 1.0}}, environ={})


def test_config_is_frozen() -> None:
    cfg = load_config(environ={})
    with pytest.raises(ValidationError):
        cfg.window.horizon = 3  # type: ignore[misc]


def test_with_overrides_returns_a_validated_copy() -> None:
    cfg = load_config(environ={})
    changed = cfg.with_overrides({"window": {"horizon": 3}})
    assert changed.window.horizon == 3 and changed.window.lookback is None
    assert cfg.window.horizon == 12
    with pytest.raises(ValidationError):
        cfg.with_overrides({"window": {"horizn": 3}})


@pytest.mark.parametrize(
    ("freq", "expected"),
    [("MS", 12), ("D", 7), ("h", 24), ("ME", 12), ("QS", 4), ("W-SUN", 52), ("2h", 24), ("B", 5), ("YS", 1),
     ("unknown", 1)],
)
def test_season_length_for(freq: str, expected: int) -> None:
    assert season_length_for(freq) == expected


def test_a_yaml_syntax_error_names_the_file_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path, "model:\n  hidden_size: 32\n bad: [1\n")
    with pytest.raises(ConfigError, match=rf"^{path}, line 3, column 2: invalid YAML: "):
        load_config(path, environ={})


@pytest.mark.parametrize("raw", ["15,24", "15, 24", "[15,24]", "[15, 24]"])
def test_list_settings_parse_from_the_environment_as_comma_or_json_lists(raw: str) -> None:
    cfg = load_config(environ={"LSTM_PIPELINE_WINDOW__LOOKBACKS": raw})
    assert cfg.window.lookbacks == (15, 24)


def test_every_tuple_field_takes_a_list_from_the_environment() -> None:
    tuples = [(section, name) for section, holder in PipelineConfig.model_fields.items()
              for name, info in holder.annotation.model_fields.items()  # type: ignore[union-attr]
              if get_origin(info.annotation) is tuple]
    assert ("window", "lookbacks") in tuples and ("data", "covariates") in tuples
    for section, name in tuples:
        parsed = _env_values({f"LSTM_PIPELINE_{section.upper()}__{name.upper()}": "a, b"})
        assert parsed == {section: {name: ("a", "b")}}
        assert _env_values({f"LSTM_PIPELINE_{section.upper()}__{name.upper()}": '["a", "b"]'}) == \
            {section: {name: ["a", "b"]}}


def test_a_json_list_that_does_not_parse_names_the_variable() -> None:
    with pytest.raises(ConfigError, match="LSTM_PIPELINE_WINDOW__LOOKBACKS: not valid JSON"):
        load_config(environ={"LSTM_PIPELINE_WINDOW__LOOKBACKS": "[15,"})
