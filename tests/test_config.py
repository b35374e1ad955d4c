from __future__ import annotations

import dataclasses
import json
from typing import Literal

import pytest

from offrl.config import coerce, make_config, parse_assignments, read_config_file
from offrl.errors import ConfigError


@dataclasses.dataclass
class Example:
    lr: float = 3e-4
    steps: int = 10
    flag: bool = False
    mode: Literal["a", "b"] = "a"
    widths: tuple[int, ...] = (256, 256)
    name: str | None = None


def test_strings_from_the_command_line_get_the_field_types():
    config = make_config(
        Example, parse_assignments(["lr=1e-3", "steps=2e3", "flag=true", "mode=b", "widths=64,32", "name=none"])
    )
    assert config == Example(lr=1e-3, steps=2000, flag=True, mode="b", widths=(64, 32), name=None)


def test_json_values_and_lists():
    assert make_config(Example, {"widths": [8], "lr": 1, "name": "x"}) == Example(lr=1.0, widths=(8,), name="x")
    assert coerce("[1, 2]", tuple[int, ...]) == (1, 2)


def test_unknown_key_names_it_and_suggests():
    with pytest.raises(ConfigError, match=r"unknown key 'lrr'.*did you mean 'lr'"):
        make_config(Example, {"lrr": 1.0})


@pytest.mark.parametrize(
    "key, value, message",
    [("steps", "1.5", "integer"), ("flag", "maybe", "true or false"), ("mode", "c", "one of"), ("lr", "fast", "number")],
)
def test_bad_values_name_key_and_value(key, value, message):
    with pytest.raises(ConfigError, match=message) as info:
        make_config(Example, {key: value})
    assert key in str(info.value)


def test_set_needs_key_value():
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["lr"])


def test_config_files(tmp_path):
    (tmp_path / "c.yaml").write_text("lr: 0.01\nwidths: [4, 4]\n")
    (tmp_path / "c.json").write_text(json.dumps({"steps": 3}))
    assert make_config(Example, read_config_file(tmp_path / "c.yaml")).widths == (4, 4)
    assert make_config(Example, read_config_file(tmp_path / "c.json")).steps == 3
    (tmp_path / "bad.json").write_text("{")
    with pytest.raises(ConfigError, match="cannot parse"):
        read_config_file(tmp_path / "bad.json")
    with pytest.raises(ConfigError, match="no such config file"):
        read_config_file(tmp_path / "missing.yaml")
