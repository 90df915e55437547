"""gitinfo: the one place git is asked which commit a result came from, and the checked runner."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from sass_retrieval.gitinfo import GitError, git, git_ok, head_commit, is_repo_root


def sh(root: Path, *args: str) -> str:
    return subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@localhost", *args], cwd=root,
                          check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    (root / "src").mkdir(parents=True)
    sh(root, "init", "-q")
    (root / "src" / "a.py").write_text("a = 1\n")
    (root / "notes.txt").write_text("x\n")
    sh(root, "add", ".")
    sh(root, "commit", "-q", "-m", "one")
    return root


def test_head_commit_full_short_and_dirty(repo: Path) -> None:
    full = sh(repo, "rev-parse", "HEAD")
    assert head_commit(repo) == full
    assert head_commit(repo, short=10) == full[:10]
    assert head_commit(repo, short=True) == sh(repo, "rev-parse", "--short", "HEAD")
    assert head_commit(repo, short=10, mark_dirty=True) == full[:10]           # clean
    (repo / "notes.txt").write_text("changed\n")
    assert head_commit(repo, short=10, mark_dirty=True) == full[:10] + "+dirty"
    # only the given paths count: a change outside them is not the code's
    assert head_commit(repo, short=10, mark_dirty=True, paths=("src",)) == full[:10]
    (repo / "untracked.py").write_text("")                                     # untracked files never count
    (repo / "src" / "a.py").write_text("a = 2\n")
    assert head_commit(repo, mark_dirty=True, paths=("src",)).endswith("+dirty")


def test_no_commit_outside_a_repository_or_before_the_first_commit(tmp_path: Path) -> None:
    assert head_commit(tmp_path) is None
    assert not is_repo_root(tmp_path)
    sh(tmp_path, "init", "-q")
    assert is_repo_root(tmp_path)
    assert head_commit(tmp_path) is None


def test_is_repo_root_is_the_top_only(repo: Path) -> None:
    assert is_repo_root(repo)
    assert not is_repo_root(repo / "src")   # inside a repository, not its top


def test_git_raises_with_gits_message_and_git_ok_reports(repo: Path) -> None:
    with pytest.raises(GitError, match="no-such-rev"):
        git(repo, "rev-parse", "--verify", "no-such-rev")
    assert git_ok(repo, "rev-parse", "-q", "--verify", "HEAD")
    assert not git_ok(repo, "rev-parse", "-q", "--verify", "refs/tags/nope")


def test_identity_fallback_when_git_has_none(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    empty = repo.parent / "empty-gitconfig"
    empty.write_text("")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(empty))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for key in ("GIT_AUTHOR_NAME", "GIT_AUTHOR_EMAIL", "GIT_COMMITTER_NAME", "GIT_COMMITTER_EMAIL", "EMAIL"):
        monkeypatch.delenv(key, raising=False)
    git(repo, "tag", "-a", "t1", "-m", "msg", identity=True)
    assert git(repo, "for-each-ref", "--format=%(taggeremail)", "refs/tags/t1").strip() == "<sass-daily@localhost>"
