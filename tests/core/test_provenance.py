import subprocess

import pytest

from poisoncurv.core.provenance import git_commit


def _git(root, *args):
    subprocess.run(["git", *args], cwd=root, check=True, capture_output=True)


def test_git_commit_is_dirty_for_code_but_not_for_results(tmp_path):
    (tmp_path / "results").mkdir()
    (tmp_path / "code.py").write_text("a = 1\n")
    (tmp_path / "results" / "run.json").write_text("{}\n")
    _git(tmp_path, "init", "-q")
    _git(tmp_path, "add", ".")
    _git(tmp_path, "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "init")
    head = git_commit(tmp_path)
    assert len(head) == 40 and not head.endswith("+dirty")
    (tmp_path / "results" / "run.json").write_text('{"new": 1}\n')      # an output written by a run
    assert git_commit(tmp_path) == head
    (tmp_path / "code.py").write_text("a = 2\n")                       # the code changed: dirty
    assert git_commit(tmp_path) == head + "+dirty"
    assert git_commit(tmp_path / "results" / "..") == head + "+dirty"


def test_git_commit_outside_a_repository(tmp_path):
    assert git_commit(tmp_path) == "unknown"


def test_short_commit_keeps_the_dirty_mark():
    from poisoncurv.core.provenance import short_commit
    assert short_commit("0123456789abcdef") == "01234567"
    assert short_commit("0123456789abcdef+dirty") == "01234567+dirty"


def test_training_summary_counts_devices_threads_commits_and_hours():
    from poisoncurv.core.provenance import training_summary

    run = lambda cpu, commit, s: {"device_name": f"CPU: {cpu} (1 torch threads)", "git_commit": commit, "wall_time_s": s}  # noqa: E731
    provs = [run("AMD EPYC", "a" * 40, 1800), run("AMD EPYC", "b" * 40, 1800), run("Intel Xeon", "b" * 40, 3600)]
    assert training_summary(provs) == ("3 training runs (2 on AMD EPYC, 1 on Intel Xeon; 1 torch thread each), "
                                       "from 2 commits, 2 hours of training")
    gpu = {"device_name": "cuda:0 (NVIDIA H100)", "git_commit": "c" * 40, "wall_time_s": 360}
    assert training_summary([gpu]) == "1 training run (1 on cuda:0), from 1 commit, 0.1 hours of training"
    shared = [{**run("Intel Xeon", "b" * 40, 3600), "shared_training": ["k1", "k2"]} for _ in range(2)]
    assert training_summary(provs + shared) == ("5 lab runs in 4 trainings (3 on Intel Xeon, 2 on AMD EPYC; 1 torch thread "
                                                "each), from 2 commits, 3 hours of training")   # the shared hour once


def test_the_run_label_is_glued_once(monkeypatch):
    from poisoncurv.book.runtime import Chapter

    glued = {}
    monkeypatch.setattr(Chapter, "_glue_text", lambda self, key, text: glued.setdefault(key, text))
    ch = Chapter("chx", "cpu", "cpu", 0, "synthetic")
    ch.glue_run("2 training runs (2 on X), from 1 commit, 0.1 hours of training")
    assert glued["chx_run"].startswith("cpu profile; 2 training runs") and "page executed on CPU:" in glued["chx_run"]
    with pytest.raises(RuntimeError, match="glued already"):
        ch.glue_run()
