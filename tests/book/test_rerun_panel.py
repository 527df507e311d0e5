"""The "Rerun this chapter" panel: commands and times from the files a repository holds (a small one written here),
no clone line without a configured URL, and the panel placed under a chapter's title in the built doctree."""

import json
from dataclasses import asdict

from chapter_doctree import chapter_doctree
from docutils import nodes

from poisoncurv.book import rerun_panel as rp
from poisoncurv.lab.grid import load_grid

GRID = """
base: {model: linear, attack: cross-deterministic, device: cpu}
profiles:
  smoke: {groups: {g: {axes: {theta: [0.0]}}}}
  cpu: {groups: {g: {axes: {theta: [0.0, 0.1]}}}}
  gpu: {groups: {g: {axes: {theta: [0.0]}}}}
  full: {base: {dataset: cifar10, model: preresnet20}, groups: {g: {axes: {theta: [0.0]}}}}
"""


def repo(tmp_path, committed=2, gpu_check=None):
    (tmp_path / "grids").mkdir(parents=True)
    (tmp_path / "grids" / "ch07.yaml").write_text(GRID)
    (tmp_path / "results" / "lab").mkdir(parents=True)
    prov = {"profile": "cpu", "wall_time_s": 150.0, "device_name": "CPU: Intel Xeon (1 torch threads)", "git_commit": "a" * 40}
    (tmp_path / "results" / "ch07_x.json").write_text(json.dumps({"provenance": prov}))
    for i, run in enumerate(load_grid(tmp_path / "grids" / "ch07.yaml", "cpu").runs[:committed]):
        (tmp_path / "results" / "lab" / f"{run.config.key()}.json").write_text(
            json.dumps({"config": asdict(run.config), "provenance": {**prov, "wall_time_s": 1800.0 * (i + 1)}}))
    if gpu_check is not None:
        (tmp_path / "benchmarks" / "results").mkdir(parents=True)
        (tmp_path / rp.GPU_CHECK).write_text(json.dumps(gpu_check))
    return tmp_path


def test_commands_go_from_a_clone_to_the_page_and_name_every_data_set(tmp_path):
    root = repo(tmp_path)
    cmds = [c for c in rp.commands("ch07_x", None, root) if not c.startswith("#")]
    assert not any(c.startswith("git clone") for c in cmds)                       # no URL configured: no clone line
    assert cmds[:3] == ["make env", ".venv/bin/python -m poisoncurv.lab.data mnist", "make rerun CHAPTER=ch07_x PROFILE=cpu DEVICE=cpu"]
    assert ".venv/bin/python -m poisoncurv.lab.data cifar10" in cmds                  # the full profile's data set
    assert cmds[-1] == "make rerun CHAPTER=ch07_x PROFILE=gpu DEVICE=cuda"
    url = rp.commands("ch07_x", "https://github.com/someone/poisoncurv.git", root)[0]
    assert url == "git clone https://github.com/someone/poisoncurv.git && cd poisoncurv"
    assert rp.commands("ch01_theory", None, root)[-1] == "make rerun CHAPTER=ch01_theory PROFILE=cpu DEVICE=cpu"


def test_the_url_is_the_config_setting_or_none(tmp_path):
    (tmp_path / "_config.yml").write_text("title: x\nhtml: {use_repository_button: false}\n")
    assert rp.repository_url(tmp_path) is None
    (tmp_path / "_config.yml").write_text("repository: {url: 'https://github.com/a/b'}\n")
    assert rp.repository_url(tmp_path) == "https://github.com/a/b"


def test_times_come_from_the_page_the_runs_and_the_gpu_projection(tmp_path):
    root = repo(tmp_path, committed=1)
    t = rp.times("ch07_x", root)
    assert t[0] == "The page's last execution (cpu profile) took 2 minutes on Intel Xeon."
    assert t[1] == ("Retraining the cpu profile: 1 training run (1 on Intel Xeon; 1 torch thread each), from 1 commit, "
                    "0.5 hours of training (1 of its 2 runs not committed yet).")
    assert t[2:] == ("The gpu profile: not yet projected (`make gpu-check` on a GPU times it).",
                     "The full profile: not yet projected (`make gpu-check` on a GPU times it).")
    check = {"projection": {"gpu": {"hours": 0.1234}, "full": {"skipped": "x"}},
             "provenance": {"device_name": "NVIDIA H100"}}
    root2 = repo(tmp_path / "b", committed=2, gpu_check=check)
    t = rp.times("ch07_x", root2)
    assert "1.5 hours of training" in t[1] and "not committed" not in t[1]
    assert t[2] == ("The gpu profile: projected 0.12 GPU-hours on one NVIDIA H100 (`make gpu-check`, runs one after "
                    "another), not measured.")
    assert t[3].startswith("The full profile: not yet projected")


def test_the_panel_goes_under_the_title_before_the_first_section():
    app, doc = chapter_doctree("ch07_x", "Title\n=====\n\nIntro.\n\nPart\n----\n\nText.\n")
    rp.insert_panel(app, doc)                    # this repository's grids/ch07.yaml
    top = next(iter(doc.findall(nodes.section)))
    kinds = [type(c).__name__ for c in top.children]
    assert kinds == ["title", "paragraph", "admonition", "section"]
    box = top.children[2]
    assert box.children[0].astext() == "Rerun this chapter" and "make rerun CHAPTER=ch07_x" in box.astext()
    assert "git clone" not in box.astext()                 # this repository's _config.yml sets no URL
    assert [type(n).__name__ for n in box.children[-1].children] == ["Text", "literal", "Text"]   # `make gpu-check` as code
