"""Grid files: the chapter-5 grid is exactly the committed runs; expansion, exclusions, dedup; bad grids name the field."""

import json
import time

import pytest
import yaml

from poisoncurv.chapters import linear_mnist
from poisoncurv.core.paths import LAB_RESULTS_DIR, REPO_ROOT
from poisoncurv.core.profiles import PROFILES
from poisoncurv.lab import grid as grid_mod
from poisoncurv.lab import sweep as sweep_mod
from poisoncurv.lab.config import kappa_lab
from poisoncurv.lab.grid import GridError, load_grid

GRIDS = REPO_ROOT / "grids"


def test_ch05_cpu_grid_is_committed_and_every_committed_run_belongs_to_a_grid():
    """Chapter 5: the 24 runs of the original chapter plus its 10 weight-decay baselines, all committed; and
    no committed lab run (of any chapter) is outside the cpu grids."""
    keys = [cfg.key() for cfg in load_grid(GRIDS / "ch05.yaml", "cpu").configs()]
    committed = {p.stem for p in LAB_RESULTS_DIR.glob("*.json")}
    assert len(keys) == len(set(keys)) == 34
    assert set(keys) <= committed
    in_grids = {cfg.key() for g in sorted(GRIDS.glob("ch*.yaml")) for cfg in load_grid(g, "cpu", check_device=False).configs()}
    assert committed <= in_grids
    for key in committed:  # and each file holds that configuration
        assert json.loads((LAB_RESULTS_DIR / f"{key}.json").read_text())["key"] == key


@pytest.mark.parametrize("profile", ["smoke", "cpu"])
def test_ch05_groups_match_the_chapter_driver(profile):
    """Group by group, the grid gives the driver's configurations in the driver's order (κ_lab as the grid gives it)."""
    grid, s = load_grid(GRIDS / "ch05.yaml", profile), linear_mnist.settings(profile)
    for loss in linear_mnist.LOSSES:
        cfg = lambda *a, **kw: linear_mnist.config(profile, "cpu", 0, loss, *a, **kw)  # noqa: E731
        B = cfg(s["theta_kappa"]).batch_size
        assert [r.config for r in grid.group("theta", loss=loss)] == [cfg(th) for th in s["thetas"]]
        assert [r.config for r in grid.group("kappa", loss=loss)] == [
            cfg(s["theta_kappa"], k) for k in s["kappa_lab"]]
        assert [kappa_lab(k, B) for k in s["kappa_paper"]] == s["kappa_lab"]     # the paper's grid, converted exactly
        assert [r.config for r in grid.group("amplitude", loss=loss)] == [
            cfg(s["theta_amplitude"], amplitude=a) for a in s["amplitudes"]]
        assert [r.config for r in grid.group("weight_decay", loss=loss)] == [
            cfg(s["theta_kappa"], weight_decay=w) for w in s["weight_decays"]]
    assert s["kappa_paper"] == [0.0, 1e2, 1e3, 1e4, 1e5, 1e6]         # the paper's grid


GRID_FILES = sorted(GRIDS.glob("*.yaml"))


def test_there_are_grid_files():
    assert {"ch05", "ch06", "ch07", "ch08"} <= {p.stem for p in GRID_FILES}


@pytest.mark.parametrize("path", GRID_FILES, ids=lambda p: p.stem)
def test_chapter_grids_expand_for_every_profile(path):
    """Every grid file in grids/ expands, for every profile it defines, to distinct runs of that profile."""
    profiles = list(yaml.safe_load(path.read_text())["profiles"])
    assert profiles and set(profiles) <= set(PROFILES)
    for profile in profiles:
        grid = load_grid(path, profile, check_device=False)
        assert grid.runs and len({r.config.key() for r in grid.runs}) == len(grid.runs)
        assert {r.config.profile for r in grid.runs} == {profile}


def write(tmp_path, text):
    path = tmp_path / "g.yaml"
    path.write_text(text)
    return path


def test_product_exclusions_dedup_and_float_coercion(tmp_path):
    path = write(tmp_path, """
base: {model: linear, device: cpu}
profiles:
  smoke:
    base: {seed: 3}
    groups:
      a: {axes: {loss: [squared, ce], theta: [0, 0.1, 0.2]}, exclude: [{loss: ce, theta: 0.2}]}
      b: {base: {theta: 0.1}, axes: {kappa: [0, 1]}}
""")
    grid = load_grid(path, "smoke")
    assert len(grid.group("a")) == 2 * 3 - 1
    assert [r.point for r in grid.group("b")] == [{"kappa": 0.0}, {"kappa": 1.0}]
    # b's κ = 0 run (default loss ce, θ = 0.1) is also in a: trained once
    assert grid.group("b")[0].config == grid.group("a", loss="ce", theta=0.1)[0].config
    assert len(grid.runs) == 5 + 1
    assert grid.runs[0].config.theta == 0.0 and isinstance(grid.runs[0].config.theta, float)  # 0 -> 0.0: same key as the CLI
    assert {r.config.seed for r in grid.runs} == {3}


def test_keep_model_is_per_group_and_wins_in_dedup(tmp_path):
    path = write(tmp_path, """
base: {model: linear, device: cpu}
profiles:
  smoke:
    groups:
      a: {axes: {theta: [0.0, 0.1]}}
      b: {axes: {theta: [0.1, 0.2]}, keep_model: true}
""")
    grid = load_grid(path, "smoke")
    assert [r.keep_model for r in grid.group("a")] == [False, False]
    assert {r.config.theta: r.keep_model for r in grid.runs} == {0.0: False, 0.1: True, 0.2: True}


BAD = [
    ("keep_model not a bool", "profiles: {smoke: {groups: {a: {axes: {theta: [0.1]}, keep_model: 1}}}}", "keep_model"),
    ("unknown top-level key", "bases: {}\nprofiles: {smoke: {groups: {a: {axes: {theta: [0.1]}}}}}", "bases"),
    ("unknown field", "profiles: {smoke: {groups: {a: {axes: {thetta: [0.1]}}}}}", "thetta"),
    ("unknown field in base", "base: {lr_max: 1.0}\nprofiles: {smoke: {groups: {a: {axes: {theta: [0.1]}}}}}", "lr_max"),
    ("wrong type", "profiles: {smoke: {groups: {a: {axes: {epochs: [2.5]}}}}}", "epochs"),
    ("YAML text for a float", "profiles: {smoke: {groups: {a: {axes: {kappa: [1e-3]}}}}}", "1.0e-3"),
    ("bool for an int", "profiles: {smoke: {groups: {a: {base: {seed: true}, axes: {theta: [0.1]}}}}}", "seed"),
    ("empty axis", "profiles: {smoke: {groups: {a: {axes: {theta: []}}}}}", "axes.theta"),
    ("no axes", "profiles: {smoke: {groups: {a: {base: {theta: 0.1}}}}}", "axes"),
    ("bad value", "profiles: {smoke: {groups: {a: {axes: {theta: [0.1, 1.5]}}}}}", "theta"),
    ("unknown group key", "profiles: {smoke: {groups: {a: {axis: {theta: [0.1]}}}}}", "axis"),
    ("unknown profile in file", "profiles: {huge: {groups: {a: {axes: {theta: [0.1]}}}}}", "huge"),
    ("profile not in file", "profiles: {cpu: {groups: {a: {axes: {theta: [0.1]}}}}}", "smoke"),
]


@pytest.mark.parametrize("what, text, named", BAD, ids=[b[0] for b in BAD])
def test_bad_grid_names_the_field(tmp_path, what, text, named):
    with pytest.raises(GridError, match=named):
        load_grid(write(tmp_path, text), "smoke")


def test_unknown_profile_and_missing_file(tmp_path):
    with pytest.raises(GridError, match="profile"):
        load_grid(GRIDS / "ch05.yaml", "huge")
    with pytest.raises(GridError, match="no such grid file"):
        load_grid(tmp_path / "absent.yaml", "smoke")


BOMB = """description: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
x1: &a1 [*a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0, *a0]
x2: &a2 [*a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1, *a1]
x3: &a3 [*a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2, *a2]
x4: &a4 [*a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3, *a3]
x5: &a5 [*a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4, *a4]
x6: &a6 [*a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5, *a5]
x7: &a7 [*a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6, *a6]
x8: &a8 [*a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7, *a7]
"""
REFUSED = [
    ("alias bomb in description", BOMB.replace("description: &a0", "a: &a0").replace("x8: &a8", "description: &a8")
     + "profiles: {smoke: {groups: {g: {axes: {theta: [0.1]}}}}}", "values, more than 100000 (an alias bomb?)"),
    ("recursive alias", "description: &d [1, *d]\nprofiles: {smoke: {groups: {g: {axes: {theta: [0.1]}}}}}", "recursive"),
    ("a group given twice", "profiles:\n  smoke:\n    groups:\n      g: {axes: {theta: [0.1]}}\n      h: {axes: {theta: [0.2]}}\n"
     "      g: {axes: {theta: [0.3]}}\n", "key 'g' given twice in one mapping (line 6)"),
    ("an axis given twice", "profiles: {smoke: {groups: {g: {axes: {theta: [0.1], theta: [0.2]}}}}}", "key 'theta' given twice"),
    ("a profile given twice", "profiles: {smoke: {groups: {g: {axes: {theta: [0.1]}}}}, smoke: {}}", "key 'smoke' given twice"),
]


@pytest.mark.parametrize("what,text,named", REFUSED, ids=[r[0] for r in REFUSED])
def test_alias_bombs_and_duplicate_keys_are_refused_in_one_line(tmp_path, what, text, named):
    start = time.perf_counter()
    with pytest.raises(GridError) as err:
        load_grid(write(tmp_path, text), "smoke")
    assert time.perf_counter() - start < 1.0
    assert str(err.value).startswith(str(tmp_path / "g.yaml")) and named in str(err.value) and "\n" not in str(err.value)


def test_anchors_aliases_and_merge_keys_still_share_definitions(tmp_path):
    path = write(tmp_path, """
base: {model: linear, device: cpu}
profiles:
  smoke:
    groups: &groups
      a: &a {base: {kappa: 0.0}, axes: {loss: &losses [squared, ce], theta: [0.0, 0.1]}}
      b: {<<: *a, base: {kappa: 1.0}}                # a merged key overridden: not a duplicate
      c: {axes: {loss: *losses}}
  cpu: {groups: *groups}
""")
    grid = load_grid(path, "smoke")
    assert len(grid.group("a")) == len(grid.group("b")) == 4 and {r.config.kappa for r in grid.group("b")} == {1.0}
    assert len(load_grid(path, "cpu").runs) == 4 + 4 + 2


def test_runs_are_counted_before_any_is_built(tmp_path, monkeypatch):
    values = ", ".join(str(i / 1000) for i in range(50))
    path = write(tmp_path, f"profiles: {{smoke: {{groups: {{a: {{axes: {{theta: [{values}], kappa: [{values}]}}}}, "
                           f"b: {{axes: {{theta: [0.1]}}}}}}}}}}")
    monkeypatch.setattr(grid_mod, "make_config", lambda *a, **k: pytest.fail("a configuration was built"))
    with pytest.raises(GridError, match=r"profiles.smoke.groups: 2,501 runs before exclusions, more than the limit of 2,000: .*--yes"):
        load_grid(path, "smoke")
    monkeypatch.undo()
    assert len(load_grid(path, "smoke", max_runs=None).group("b")) == 1


def test_sweep_refuses_a_large_grid_unless_told_yes(tmp_path, monkeypatch, capsys):
    path = write(tmp_path, "profiles: {smoke: {groups: {a: {axes: {theta: [0.01, 0.1], loss: [ce, squared]}}}}}")
    monkeypatch.setattr(sweep_mod, "MAX_RUNS", 3)
    monkeypatch.setattr(sweep_mod, "sweep", lambda grid, *a, **k: [])
    assert sweep_mod.main([str(path), "--profile", "smoke"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "4 runs before exclusions, more than the limit of 3" in err and "--yes" in err
    assert sweep_mod.main([str(path), "--profile", "smoke", "--yes"]) == 0
