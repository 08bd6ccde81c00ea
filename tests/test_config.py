"""Config loading: validation, error messages, overrides, round trips."""

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from jaxpetro.config import (
    ClusteringConfig,
    DemoConfig,
    FrozenDict,
    config_to_dict,
    config_to_yaml,
    describe_config,
    load_config,
    option,
    section,
)
from jaxpetro.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Inner:
    """Every supported leaf type."""

    ratio: float = option(0.5, "a fraction", ge=0, le=1)
    name: str | None = option(None, "optional label")
    phases: tuple[str, ...] = option(("Grt", "Bt"), "phase names")
    window: tuple[int, int] = option((0, 10), "index range")
    densities: dict[str, float] = option({"Grt": 4.1, "Qz": 2.65}, "g/cm^3", gt=0)
    weights: list[float] = option([1.0, 2.0], "per-element weights", ge=0)
    kind: Literal["a", "b"] = option("a", "a choice")
    flag: bool = option(False, "a switch")


@dataclass(frozen=True)
class Outer:
    """Schema with a required key and a nested section."""

    path: str = option(help="input file")
    count: int = option(3, "how many", ge=1)
    inner: Inner = section(Inner, "nested")


def write(tmp_path, text, name="c.yaml"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def error_of(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(*args, **kwargs)
    return str(info.value)


def test_defaults_and_shipped_demo_yaml_agree():
    assert load_config(None, DemoConfig) == DemoConfig()
    assert load_config(REPO / "configs" / "demo.yaml", DemoConfig) == DemoConfig()


def _leaves(schema):
    for f in dataclasses.fields(schema):
        if dataclasses.is_dataclass(f.default_factory if f.default_factory is not dataclasses.MISSING else None):
            yield from _leaves(f.default_factory)
        else:
            yield f.name


def test_every_demo_key_has_help():
    lines = describe_config(DemoConfig).splitlines()
    n_leaves = sum(1 for _ in _leaves(DemoConfig))
    assert len(lines) == n_leaves
    assert all(len(line.split("  ")) >= 3 for line in lines), lines


def test_unknown_key_suggests_closest_and_lists_section(tmp_path):
    path = write(tmp_path, "clustering:\n  modle: gaussian\n")
    msg = error_of(path, DemoConfig)
    assert str(path) in msg
    assert "'clustering.modle'" in msg
    assert "Did you mean 'clustering.model'?" in msg
    assert "chunk_size, covariance" in msg


def test_unknown_top_level_key_without_close_match(tmp_path):
    msg = error_of(write(tmp_path, "zzz: 1\n"), DemoConfig)
    assert "unknown key 'zzz'" in msg and "Did you mean" not in msg
    assert "clustering, isocon, mixing, output, per_grain, ptpath, quantify, section, seed, synthetic" in msg


@pytest.mark.parametrize(
    "yaml_text, key, expected",
    [
        ("clustering:\n  max_iter: many\n", "clustering.max_iter", "expected an integer ≥ 1"),
        ("clustering:\n  max_iter: 2.5\n", "clustering.max_iter", "expected an integer ≥ 1"),
        ("clustering:\n  max_iter: true\n", "clustering.max_iter", "expected an integer ≥ 1"),
        ("synthetic:\n  rows: 8\n", "synthetic.rows", "expected an integer ≥ 16"),
        ("clustering:\n  tol: 0\n", "clustering.tol", "expected a finite number > 0"),
        ("clustering:\n  tol: .nan\n", "clustering.tol", "expected a finite number > 0"),
        ("clustering:\n  use_bse: 1\n", "clustering.use_bse", "expected true or false"),
        ("clustering: 3\n", "clustering", "expected a section"),
        ("seed: -1\n", "seed", "expected an integer ≥ 0"),
    ],
)
def test_wrong_type_or_bounds_names_key_value_and_expectation(tmp_path, yaml_text, key, expected):
    path = write(tmp_path, yaml_text)
    msg = error_of(path, DemoConfig)
    assert msg.startswith(f"{path}: invalid value ")
    assert f"key '{key}'" in msg and expected in msg


def test_bad_choice_lists_allowed_and_suggests():
    msg = error_of({"clustering": {"model": "gaussain"}}, DemoConfig)
    assert "'poisson', 'gaussian'" in msg and "Did you mean 'gaussian'?" in msg


def test_ints_accepted_for_floats_and_numbers_written_as_yaml_strings():
    cfg = load_config({"synthetic": {"dwell_ms": 5}, "clustering": {"tol": "1e-9"}}, DemoConfig)
    assert cfg.synthetic.dwell_ms == 5.0 and isinstance(cfg.synthetic.dwell_ms, float)
    assert cfg.clustering.tol == 1e-9


def test_missing_required_key():
    msg = error_of({}, Outer)
    assert "missing required key 'path'" in msg and "--set path=" in msg


def test_missing_file_and_directory(tmp_path):
    assert "not found" in error_of(tmp_path / "nope.yaml", DemoConfig)
    assert str(tmp_path) in error_of(tmp_path, DemoConfig)


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "seed: 1\nclustering:\n  model: [poisson\n  tol: 1\n")
    msg = error_of(path, DemoConfig)
    assert str(path) in msg and "not valid YAML" in msg and "line " in msg


def test_repeated_key_is_an_error(tmp_path):
    msg = error_of(write(tmp_path, "seed: 1\nseed: 2\n"), DemoConfig)
    assert "'seed' repeated" in msg and "line 2" in msg


def test_empty_file_and_empty_section_mean_defaults(tmp_path):
    assert load_config(write(tmp_path, "# nothing\n"), DemoConfig) == DemoConfig()
    assert load_config(write(tmp_path, "clustering:\n"), DemoConfig) == DemoConfig()


def test_top_level_must_be_mapping(tmp_path):
    assert "mapping" in error_of(write(tmp_path, "- 1\n- 2\n"), DemoConfig)


def test_overrides_nested_and_typed(tmp_path):
    path = write(tmp_path, "clustering:\n  model: poisson\n")
    cfg = load_config(path, DemoConfig, ["clustering.model=gaussian", "clustering.tol=1e-6", "seed=7",
                                         "output={plots: false}"])
    assert cfg.clustering.model == "gaussian" and cfg.clustering.tol == 1e-6
    assert cfg.seed == 7 and cfg.output.plots is False and cfg.output.dpi == 120


def test_override_does_not_mutate_source_mapping():
    source = {"clustering": {"model": "poisson"}}
    load_config(source, DemoConfig, ["clustering.model=gaussian"])
    assert source == {"clustering": {"model": "poisson"}}


@pytest.mark.parametrize(
    "override, expected",
    [
        ("clustering.tol", "expected the form KEY=VALUE"),
        ("=3", "expected the form KEY=VALUE"),
        ("clustering..tol=3", "expected the form KEY=VALUE"),
        ("clustering.max_iter=lots", "--set clustering.max_iter=lots: invalid value 'lots'"),
        ("clustering.modle=gaussian", "Did you mean 'clustering.model'?"),
        ("seed.x=1", "--set seed.x=1"),
        ("clustering.tol=[1", "not valid YAML"),
    ],
)
def test_override_errors(override, expected):
    assert expected in error_of(None, DemoConfig, [override])


def test_override_into_a_value_is_an_error(tmp_path):
    msg = error_of(write(tmp_path, "seed: 3\n"), DemoConfig, ["seed.x=1"])
    assert "'seed' is a value, not a section" in msg


def test_container_types_and_their_errors():
    cfg = load_config({"path": "a.h5", "inner": {"densities": {"Ms": 2.8}, "weights": [1, 3]}}, Outer)
    assert cfg.inner.densities == {"Ms": 2.8} and isinstance(cfg.inner.densities, FrozenDict)
    assert cfg.inner.weights == (1.0, 3.0)
    assert "inner.densities.Ms" in error_of({"path": "x", "inner": {"densities": {"Ms": -1}}}, Outer)
    assert "a list of 2 items" in error_of({"path": "x", "inner": {"window": [1, 2, 3]}}, Outer)
    assert "inner.phases[1]" in error_of({"path": "x", "inner": {"phases": ["Grt", 3]}}, Outer)
    assert "quote it" in error_of({"path": 12}, Outer)


def test_configs_are_frozen_and_hashable():
    cfg = load_config({"path": "a.h5"}, Outer)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.count = 4
    with pytest.raises(TypeError):
        cfg.inner.densities["Grt"] = 1.0
    assert hash(cfg) == hash(load_config({"path": "a.h5"}, Outer))


def test_cross_field_check_in_post_init_gets_source():
    @dataclass(frozen=True)
    class Checked:
        lo: float = option(0.0)
        hi: float = option(1.0)

        def __post_init__(self):
            if self.hi <= self.lo:
                raise ConfigError("'hi' must exceed 'lo'")

    assert error_of(None, Checked, ["hi=-1"]).startswith("defaults with --set hi=-1: 'hi' must exceed 'lo'")


def test_schema_must_be_frozen_dataclass():
    @dataclass
    class Mutable:
        x: int = 1

    with pytest.raises(TypeError, match="frozen"):
        load_config(None, Mutable)


def leaf_values():
    return st.fixed_dictionaries(
        {
            "ratio": st.floats(0, 1),
            "name": st.none() | st.text(st.characters(codec="utf-8"), max_size=20),
            "phases": st.lists(st.text(st.characters(codec="utf-8"), max_size=8), max_size=4),
            "window": st.tuples(st.integers(), st.integers()),
            "densities": st.dictionaries(st.text(max_size=6), st.floats(min_value=0, exclude_min=True,
                                                                       allow_infinity=False)),
            "weights": st.lists(st.floats(min_value=0, allow_infinity=False), max_size=4),
            "kind": st.sampled_from(["a", "b"]),
            "flag": st.booleans(),
        }
    )


@settings(max_examples=60, deadline=None)
@given(inner=leaf_values(), path=st.text(min_size=1, max_size=30), count=st.integers(min_value=1))
def test_round_trip_all_types(inner, path, count):
    cfg = load_config({"path": path, "count": count, "inner": inner}, Outer)
    text = config_to_yaml(cfg)
    assert load_config(yaml.safe_load(text), Outer) == cfg
    assert config_to_dict(load_config(config_to_dict(cfg), Outer)) == config_to_dict(cfg)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(min_value=0, max_value=2**63 - 1),
    rows=st.integers(min_value=16, max_value=10**6),
    dwell=st.floats(min_value=0, exclude_min=True, allow_infinity=False),
    model=st.sampled_from(["poisson", "gaussian"]),
    use_bse=st.booleans(),
    tol=st.floats(min_value=1e-300, max_value=1.0),
)
def test_demo_round_trip_through_file(tmp_path_factory, seed, rows, dwell, model, use_bse, tol):
    overrides = [f"seed={seed}", f"synthetic.rows={rows}", f"synthetic.dwell_ms={dwell!r}",
                 f"clustering.model={model}", f"clustering.use_bse={str(use_bse).lower()}", f"clustering.tol={tol!r}"]
    cfg = load_config(None, DemoConfig, overrides)
    path = tmp_path_factory.mktemp("rt") / "resolved.yaml"
    path.write_text(config_to_yaml(cfg), encoding="utf-8")
    again = load_config(path, DemoConfig)
    assert again == cfg and again.clustering.tol == tol and again.synthetic.dwell_ms == dwell


def test_clustering_defaults_match_brief():
    c = ClusteringConfig()
    assert (c.model, c.covariance, c.transform, c.init) == ("poisson", "full", "sqrt", "anchors")
    assert (c.max_iter, c.tol, c.reg_covar, c.chunk_size, c.use_bse) == (500, 1e-7, 1e-6, None, True)  # None: automatic


@dataclass(frozen=True)
class WithPaths:
    """Path options: one file, a list of files, and a plain string that is not a path."""

    data: str = option(help="input file", path=True)
    extra: tuple[str, ...] = option((), "more files", path=True)
    label: str = option("x/y", "not a path")


def test_relative_paths_resolve_from_the_config_files_folder(tmp_path, monkeypatch):
    """As a user writes it: paths in a config are relative to that config, wherever it is run from;
    paths given with --set are relative to the working directory."""
    folder = tmp_path / "project" / "configs"
    folder.mkdir(parents=True)
    config = write(folder, "data: ../data/rock.csv\nextra: [a.csv, /abs/b.csv]\nlabel: q/r\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    cfg = load_config(config, WithPaths)
    assert cfg.data == str(tmp_path / "project" / "data" / "rock.csv")
    assert cfg.extra == (str(folder / "a.csv"), "/abs/b.csv") and cfg.label == "q/r"
    cfg = load_config(config, WithPaths, ["data=mine.csv", "extra=[c.csv]"])
    assert cfg.data == str(elsewhere / "mine.csv") and cfg.extra == (str(elsewhere / "c.csv"),)
    assert load_config({"data": "m.csv"}, WithPaths).data == str(elsewhere / "m.csv")


def test_shipped_configs_find_their_data_from_any_folder(tmp_path, monkeypatch):
    from jaxpetro.config import IsoconConfig, PtpathConfig

    monkeypatch.chdir(tmp_path)
    ptpath = load_config(REPO / "configs" / "ptpath.yaml", PtpathConfig)
    assert Path(ptpath.profile).is_file() and Path(ptpath.forward.path).is_file()
    assert Path(load_config(REPO / "configs" / "isocon.yaml", IsoconConfig).data).is_file()


def test_a_single_value_where_a_list_is_expected():
    cfg = load_config({"path": "a", "inner": {"phases": "Grt", "weights": 2}}, Outer)
    assert cfg.inner.phases == ("Grt",) and cfg.inner.weights == (2.0,)
    assert load_config({"path": "a"}, Outer, ["inner.phases=Qz"]).inner.phases == ("Qz",)
    # a fixed-length tuple keeps its shape: one number is not a [start, stop] range
    assert "a list of 2 items" in error_of({"path": "x", "inner": {"window": 3}}, Outer)
