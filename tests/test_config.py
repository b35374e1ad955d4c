from __future__ import annotations

import dataclasses
import json
from typing import Literal

import pytest

from offrl.algos.registry import get_algo_class, list_algos
from offrl.config import (
    coerce,
    config_template,
    field_comments,
    make_config,
    parse_assignments,
    read_config,
    read_config_file,
    write_template,
)
from offrl.errors import ConfigError

ALGOS = [cls.name for cls in list_algos()]


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


@dataclasses.dataclass
class Commented:
    """The class docstring is no field's comment."""

    lr: float = 1e-3  # Adam learning rate
    # the comment lines right above a field
    # are its comment when its own line has none
    widths: tuple[int, ...] = (
        256,
        256,
    )
    steps: int = 10
    """A string on the next line (tyro's help), over
    two lines."""
    plain: int = 0

    # a section comment, then a blank line: no field's

    def method(self) -> int:
        inner: int = 1  # not a field
        return inner


@dataclasses.dataclass
class Inherited(Commented):
    extra: bool = False  # the subclass's own field
    lr: float = 3e-4


def test_field_comments_read_both_conventions_and_inherited_fields():
    assert field_comments(Inherited) == {
        "lr": "Adam learning rate",  # redefined without a comment: the base class's stays
        "widths": "the comment lines right above a field are its comment when its own line has none",
        "steps": "A string on the next line (tyro's help), over two lines.",
        "extra": "the subclass's own field",
    }


@pytest.mark.parametrize("algo", ALGOS)
def test_every_config_field_has_a_comment(algo):
    config_class = get_algo_class(algo).Config
    comments = field_comments(config_class)
    missing = [f.name for f in dataclasses.fields(config_class) if not comments.get(f.name)]
    assert not missing, f"{config_class.__qualname__}: fields without a '# comment' on their line: {missing}"


@pytest.mark.parametrize("algo", ALGOS)
def test_a_template_reads_back_as_the_default_config(tmp_path, algo):
    path = write_template(algo, tmp_path / f"{algo}.json")
    template = json.loads(path.read_text())
    fields = [f.name for f in dataclasses.fields(get_algo_class(algo).Config)]
    assert [key for key in template["algo_config"] if not key.startswith("#")] == fields
    assert all(f"# {name}" in template["algo_config"] for name in fields)
    name, algo_overrides, train_overrides = read_config(path)
    assert name == algo and train_overrides == {}
    config_class = get_algo_class(algo).Config
    assert make_config(config_class, algo_overrides) == config_class()


def test_an_edited_template_applies_its_values_and_ignores_comments(tmp_path):
    template = config_template("iql", train={"# steps": "total", "steps": 10})
    template["algo_config"].update({"expectile": 0.9, "hidden_dims": [32, 32], "# expectile": "edited comment"})
    template["train"]["steps"] = 500
    template["#extra"] = {"anything": "goes"}
    (tmp_path / "iql.json").write_text(json.dumps(template))
    name, algo_overrides, train_overrides = read_config(tmp_path / "iql.json")
    config = make_config(get_algo_class(name).Config, algo_overrides)
    assert (config.expectile, config.hidden_dims, config.temperature) == (0.9, (32, 32), 3.0)
    assert train_overrides == {"steps": 500}


def test_the_flat_layout_is_still_read(tmp_path):
    (tmp_path / "flat.yaml").write_text("algo: iql\n'# note': ignored\nexpectile: 0.8\n")
    assert read_config(tmp_path / "flat.yaml") == ("iql", {"expectile": 0.8}, {})
    (tmp_path / "unnamed.json").write_text('{"lr": 0.01}')
    assert read_config(tmp_path / "unnamed.json") == (None, {"lr": 0.01}, {})


@pytest.mark.parametrize(
    "content, fragments",
    [
        ({"algo": "bc", "algo_config": {}, "trian": {}}, ["unknown key 'trian' at the top level", "did you mean 'train'"]),
        ({"algo": "bc", "algo_config": [1]}, ["algo_config: expected a mapping"]),
        ({"algo": 3, "train": {}}, ["algo: expected an algorithm name"]),
    ],
)
def test_malformed_files_name_the_file_and_the_key(tmp_path, content, fragments):
    (tmp_path / "c.json").write_text(json.dumps(content))
    with pytest.raises(ConfigError) as info:
        read_config(tmp_path / "c.json")
    assert str(tmp_path / "c.json") in str(info.value)
    for fragment in fragments:
        assert fragment in str(info.value)


def test_write_template_refuses_to_overwrite(tmp_path):
    write_template("bc", tmp_path / "bc.json")
    with pytest.raises(ConfigError, match="already exists"):
        write_template("bc", tmp_path / "bc.json")
    write_template("td3_bc", tmp_path / "bc.json", overwrite=True)
    assert read_config(tmp_path / "bc.json")[0] == "td3_bc"
    with pytest.raises(ConfigError, match="did you mean iql"):
        write_template("iqll", tmp_path / "x.json")
    assert not (tmp_path / "x.json").exists()
