"""Which version of its data a run read, from git and DVC; putting data under DVC; checking
out a recorded version again.

``zero2one data add PATH`` puts a file or folder under DVC in its git repository (``dvc init``
on first use, the data pushed to the default DVC remote — the workspace's ``dvc-remote``
folder unless the repository names one) and stages the ``.dvc`` file for the next commit.

Every tracked run records :func:`describe` of the files and folders its recipe reads: the
repository's commit and, per path, how it is versioned — ``dvc`` (the ``.dvc`` file's hash),
``git`` (the object id at that commit) or ``none`` — and whether it was ``clean`` (what the
commit records is what the run read). :func:`checkout` rebuilds that data in a temporary git
worktree for ``zero2one reproduce``; the user's own working tree is never touched.

DVC runs as ``python -m dvc`` from this environment (its command line is its stable interface),
with its analytics off.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from zero2one.errors import DataError, UserError, require
from zero2one.paths import workspace

# a run's record of what it was made from: its data's git and DVC versions (describe()), the
# libraries and the machine; written by training, read by reproduce and data diff
LINEAGE = "lineage.json"
DEFAULT_REMOTE = "zero2one"  # the name `data add` gives the remote it configures
_TIMEOUT = 600  # seconds for one git or DVC command (a push of a large data set)


def _env() -> dict[str, str]:
    return {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_TERMINAL_PROMPT": "0"}


def _git(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    try:
        done = subprocess.run(["git", "-C", str(root), *args], capture_output=True, text=True,
                              timeout=_TIMEOUT, env=_env(), check=False)
    except FileNotFoundError:
        raise UserError("git is not installed; data versions need git") from None
    if check and done.returncode != 0:
        raise UserError(f"git {args[0]} failed in {root}: {_last_line(done)}")
    return done


def _dvc(root: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    require("dvc", "dvc")
    done = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=root, capture_output=True,
                          text=True, timeout=_TIMEOUT, env=_env(), check=False)
    if check and done.returncode != 0:
        raise UserError(f"dvc {args[0]} failed in {root}: {_last_line(done)}")
    return done


def _last_line(done: subprocess.CompletedProcess[str]) -> str:
    """The line of a failed command's output that says why (DVC and git end with it)."""
    lines = [line.strip() for line in (done.stderr + done.stdout).splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith(("ERROR", "error", "fatal"))]
    return (errors or lines or [f"exit code {done.returncode}"])[0]


def git_root(path: Path) -> Path | None:
    """The top of the git working tree holding ``path`` (a file or folder), or None."""
    folder = path if path.is_dir() else path.parent
    while not folder.exists():  # a path not created yet: ask its nearest existing parent
        folder = folder.parent
    try:
        done = subprocess.run(["git", "-C", str(folder), "rev-parse", "--show-toplevel"],
                              capture_output=True, text=True, timeout=30, env=_env(),
                              check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 else None


# ---- zero2one data add ---------------------------------------------------------------------


@dataclass
class Added:
    """What :func:`add` did."""

    path: str  # relative to the repository
    dvc_file: str
    md5: str
    size: int | None
    files: int | None  # a folder's file count
    remote: str  # the remote's name and URL
    commit: str | None  # the commit made with --message, else None (staged only)
    unchanged: bool  # the data is at the version the last commit records
    root: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def add(path: str | Path, *, remote: str | None = None, message: str | None = None) -> Added:
    """Put ``path`` under DVC, push it to the default remote (``remote``, a DVC remote URL,
    becomes the repository's default first) and stage the ``.dvc`` file; with ``message``,
    commit it. Adding a data set again records its new version."""
    target = Path(path).absolute()
    if not target.exists():
        raise DataError(f"{path}: no such file or folder")
    root = git_root(target)
    if root is None:
        raise UserError(f"{path} is not inside a git repository; run `git init` in the "
                        "project first (DVC keeps its .dvc files in git)")
    target = target.resolve()
    relative = target.relative_to(root).as_posix()
    if relative == "." or Path(relative).parts[0] in (".git", ".dvc"):
        raise UserError(f"{path}: add a data file or folder inside the repository, not "
                        f"{'the repository itself' if relative == '.' else relative}")
    if _git(root, "ls-files", "--error-unmatch", "--", relative, check=False).returncode == 0:
        raise UserError(f"{relative} is tracked by git; stop tracking it there first "
                        f"(git rm -r --cached {relative}), then add it to DVC")
    dvc_file = f"{relative}.dvc"
    _check_not_ignored(root, dvc_file)
    created = not (root / ".dvc").is_dir()
    try:
        if created:
            _dvc(root, "init")  # not --quiet: that hides DVC's reason when it fails too
        name = _set_remote(root, remote)
        _dvc(root, "add", relative)
    except BaseException:
        if created:  # what this call set up goes, unstaged: the repository is as it was
            _undo_init(root)
        raise
    pushed = _dvc(root, "push", dvc_file, check=False)
    if pushed.returncode != 0:
        raise UserError(f"{relative} is added to DVC but could not be pushed to remote {name}: "
                        f"{_last_line(pushed)}; fix the remote and run `dvc push {dvc_file}`")
    staged = [dvc_file, *[p for p in (str(Path(relative).parent / ".gitignore"), ".dvcignore",
                                      ".dvc/config", ".dvc/.gitignore")
                          if (root / p).exists()]]
    _git(root, "add", "--", *staged)
    commit = None
    # nothing to commit: this version is the committed one already
    unchanged = _git(root, "diff", "--cached", "--quiet", "HEAD", "--", *staged,
                     check=False).returncode == 0
    if message is not None and not unchanged:
        _git(root, "commit", "--quiet", "-m", message, "--", *staged)
        commit = _git(root, "rev-parse", "HEAD").stdout.strip()
    out = _outs(root / dvc_file)[0]
    return Added(path=relative, dvc_file=dvc_file, md5=out["md5"], size=out.get("size"),
                 files=out.get("nfiles"), remote=name, commit=commit, unchanged=unchanged,
                 root=str(root))


def _check_not_ignored(root: Path, dvc_file: str) -> None:
    """DVC keeps ``dvc_file`` in git, so git must not ignore it: say which rule does."""
    if _git(root, "check-ignore", "-q", "--no-index", "--", dvc_file,
            check=False).returncode != 0:
        return
    done = _git(root, "check-ignore", "--verbose", "--no-index", "--", dvc_file, check=False)
    # "SOURCE:LINE:PATTERN<TAB>PATH"
    source, line, pattern = ([*done.stdout.strip().partition("\t")[0].split(":", 2), "", ""])[:3]
    folder = Path(dvc_file).parts[0]
    raise UserError(
        f"{dvc_file} would be ignored by git (rule {pattern!r}, {source} line {line}), and DVC "
        f"keeps it in git; ignore the folder's contents instead (`/{folder}/**`, "
        f"`!/{folder}/**/`, `!/{folder}/**/*.dvc`) or keep the data in a folder git does not "
        "ignore")


def _undo_init(root: Path) -> None:
    """Remove what ``dvc init`` made and staged (and the remote set beside it)."""
    _git(root, "rm", "-r", "--cached", "--quiet", "--ignore-unmatch", "--", ".dvc",
         ".dvcignore", check=False)
    shutil.rmtree(root / ".dvc", ignore_errors=True)
    (root / ".dvcignore").unlink(missing_ok=True)


def _set_remote(root: Path, url: str | None) -> str:
    """The default remote, as ``NAME (URL)``: ``url`` made the default (in the repository's
    shared config), else the one configured, else the workspace's local folder (this
    machine's config only: the path means nothing elsewhere)."""
    if url is not None:  # this machine's local default would still win: it goes
        _dvc(root, "remote", "remove", "--local", DEFAULT_REMOTE, check=False)
        _dvc(root, "remote", "add", "--default", "--force", DEFAULT_REMOTE, url)
    elif _dvc(root, "remote", "default", check=False).returncode != 0:  # none set
        local = workspace() / "dvc-remote"
        local.mkdir(parents=True, exist_ok=True)
        _dvc(root, "remote", "add", "--local", "--default", "--force", DEFAULT_REMOTE,
             str(local))
    name = _dvc(root, "remote", "default").stdout.strip()
    return f"{name} ({_dvc(root, 'config', f'remote.{name}.url').stdout.strip()})"


def _outs(dvc_file: Path) -> list[dict[str, Any]]:
    import yaml

    try:
        outs = (yaml.safe_load(dvc_file.read_text()) or {}).get("outs") or []
    except (OSError, yaml.YAMLError) as exc:
        raise DataError(f"{dvc_file}: not a readable .dvc file ({exc})") from None
    if not outs or not all(isinstance(o, dict) and "md5" in o for o in outs):
        raise DataError(f"{dvc_file}: records no data hash; run `zero2one data add` again")
    return outs  # type: ignore[no-any-return]


# ---- what a run records -------------------------------------------------------------------


def describe(paths: Sequence[Path], *, cwd: Path | None = None) -> dict[str, Any]:
    """How each of ``paths`` (the files and folders a recipe reads) is versioned, for the
    run's record: ``{"git": {"commit", "workdir"} or None, "data": [{"path", "versioned":
    dvc|git|none, "clean", "dvc": [{"file", "md5"}] or "object"}]}``. A few git calls where
    nothing is under DVC; one ``dvc status`` otherwise. A data check that fails (DVC not
    installed, a broken .dvc file) leaves ``data`` empty and says why in ``error``; the commit
    is recorded all the same."""
    cwd = (cwd or Path.cwd()).resolve()
    root = git_root(cwd)
    record: dict[str, Any] = {"git": None, "data": []}
    if root is not None:
        commit = _git(root, "rev-parse", "--verify", "-q", "HEAD", check=False).stdout.strip()
        record["git"] = {"commit": commit or None,
                         "workdir": cwd.relative_to(root).as_posix()}
    try:
        _describe_data(record, paths, cwd=cwd, root=root)
    except (UserError, OSError, subprocess.SubprocessError) as exc:
        record.update(data=[], error=str(exc))
    return record


def _describe_data(record: dict[str, Any], paths: Sequence[Path], *, cwd: Path,
                   root: Path | None) -> None:
    checks: list[tuple[dict[str, Any], Path]] = []  # (entry, .dvc file) for one dvc status
    for path in paths:
        full = (cwd / path).resolve()
        entry: dict[str, Any] = {"path": str(path), "versioned": "none", "clean": False}
        record["data"].append(entry)
        if root is None or not full.is_relative_to(root):
            continue
        relative = full.relative_to(root).as_posix()
        entry["path"] = relative
        for dvc_file in _covering(root, full):
            entry["versioned"] = "dvc"
            entry.setdefault("dvc", []).append({
                "file": dvc_file.relative_to(root).as_posix(),
                "md5": [o["md5"] for o in _outs(dvc_file)],
            })
            checks.append((entry, dvc_file))
        if entry["versioned"] == "none" and record["git"]["commit"] and \
                _git(root, "ls-files", "--error-unmatch", "--", relative,
                     check=False).returncode == 0:
            entry["versioned"] = "git"
            entry["object"] = _git(root, "rev-parse", f"HEAD:{relative}",
                                   check=False).stdout.strip() or None
            entry["clean"] = not _changed(root, [relative])
    if checks:
        assert root is not None
        _check_dvc(root, checks)


def _covering(root: Path, path: Path) -> list[Path]:
    """The .dvc files that version ``path``: its own or a parent folder's, else (a folder)
    those of the files and folders inside it."""
    for candidate in [path, *path.parents]:
        if candidate == root:
            break
        dvc_file = candidate.with_name(candidate.name + ".dvc")
        if dvc_file.is_file():
            return [dvc_file]
    if path.is_dir():  # git lists them faster than a walk of a large data folder
        inside = _git(root, "ls-files", "--cached", "--others", "--exclude-standard", "--",
                      f"{path.relative_to(root).as_posix()}/*.dvc").stdout
        return sorted(root / line for line in inside.splitlines() if line.strip())
    return []


def _changed(root: Path, paths: list[str]) -> list[str]:
    """Those of ``paths`` that differ from the commit (modified, staged or untracked)."""
    out = _git(root, "status", "--porcelain", "--untracked-files=all", "--", *paths).stdout
    return [line[3:] for line in out.splitlines() if line.strip()]


def _check_dvc(root: Path, checks: list[tuple[dict[str, Any], Path]]) -> None:
    """Mark clean the entries whose data matches their .dvc files and whose .dvc files match
    the commit."""
    files = sorted({dvc_file.relative_to(root).as_posix() for _, dvc_file in checks})
    done = _dvc(root, "status", "--json", *files, check=False)
    try:
        changed = set(json.loads(done.stdout or "{}")) if done.returncode == 0 else set(files)
    except json.JSONDecodeError:
        changed = set(files)
    stale = changed | set(_changed(root, files))
    for entry, _ in checks:
        entry["clean"] = all(d["file"] not in stale for d in entry["dvc"])


def unreproducible(record: dict[str, Any]) -> list[str]:
    """Why a run with this record cannot be reproduced from git and DVC (empty: it can)."""
    if record.get("error"):
        return [f"its data versions were not recorded ({record['error']})"]
    reasons = []
    for entry in record.get("data", []):
        if entry["versioned"] == "none":
            reasons.append(f"{entry['path']} is versioned by neither git nor DVC "
                           "(`zero2one data add` it before training)")
        elif not entry["clean"]:
            reasons.append(f"{entry['path']} had changes not committed to git when the run "
                           "read it (the data or its .dvc file)")
    if reasons or not record.get("data"):
        return reasons
    git = record.get("git") or {}
    if not git.get("commit"):
        reasons.append("the repository had no commit")
    return reasons


# ---- zero2one reproduce: the recorded data, checked out again ------------------------------


def has_commit(root: Path, commit: str) -> bool:
    return _git(root, "cat-file", "-e", f"{commit}^{{commit}}", check=False).returncode == 0


@contextmanager
def checkout(record: dict[str, Any], *, root: Path) -> Iterator[Path]:
    """A temporary git worktree of ``root`` at the recorded commit with the recorded DVC data
    pulled into it (from this repository's DVC cache, else its remote); yields the folder the
    run was started in. Removed afterwards, also on errors."""
    git = record["git"]
    commit = git["commit"]
    if not has_commit(root, commit):
        raise UserError(f"commit {commit[:12]} is not in the repository at {root}; fetch it "
                        "(git fetch) and run reproduce again")
    folder = Path(tempfile.mkdtemp(prefix="zero2one-reproduce-"))
    tree = folder / "tree"
    _git(root, "worktree", "add", "--quiet", "--detach", str(tree), commit)
    try:
        dvc_files = sorted({d["file"] for e in record["data"] for d in e.get("dvc", [])})
        if dvc_files:
            _pull(root, tree, dvc_files, record)
        yield tree / git["workdir"]
    finally:
        _git(root, "worktree", "remove", "--force", str(tree), check=False)
        shutil.rmtree(folder, ignore_errors=True)
        _git(root, "worktree", "prune", check=False)


def _pull(root: Path, tree: Path, dvc_files: list[str], record: dict[str, Any]) -> None:
    """Check out ``dvc_files``' data in the worktree ``tree``: this machine's remote settings
    (``.dvc/config.local``) and this repository's cache are used, the remote only for what
    the cache lacks."""
    local = root / ".dvc" / "config.local"
    if local.is_file():
        shutil.copy(local, tree / ".dvc" / "config.local")
    if (root / ".dvc" / "cache").is_dir():
        _dvc(tree, "config", "--local", "cache.dir", str(root / ".dvc" / "cache"))
    for entry in record["data"]:
        for recorded in entry.get("dvc", []):
            found = [o["md5"] for o in _outs(tree / recorded["file"])]
            if found != recorded["md5"]:
                raise UserError(f"{recorded['file']} at commit {record['git']['commit'][:12]} "
                                f"records {found}, the run read {recorded['md5']}")
    done = _dvc(tree, "pull", "--quiet", *dvc_files, check=False)
    if done.returncode != 0:
        missing = [line.strip().removeprefix("md5: ") for line in
                   (done.stderr + done.stdout).splitlines() if line.strip().startswith("md5:")]
        remote = _dvc(tree, "remote", "default", check=False).stdout.strip() or "(none set)"
        what = f" (md5 {', '.join(missing)})" if missing else ""
        raise UserError(f"the data of {', '.join(dvc_files)}{what} is in neither this "
                        f"machine's DVC cache nor the remote {remote}: push it from a "
                        f"machine that has it (dvc push) — {_last_line(done)}")
