import subprocess

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
