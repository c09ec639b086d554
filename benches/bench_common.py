"""What the benchmark scripts share: running the release binary and measuring it."""

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def release_binary() -> str:
    """The release binary under CARGO_TARGET_DIR (or ./target)."""
    return os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "lakescore")


def run(binary: str, project: Path, args: list) -> tuple:
    """Runs lakescore in `project`; returns (seconds, peak RSS in MiB, stdout). Exits on failure."""
    return run_command([binary, *args], project)


def run_command(argv: list, cwd: Path) -> tuple:
    """Runs `argv` in `cwd`; returns (seconds, peak RSS in MiB, stdout). Exits on failure."""
    args = argv[1:]
    started = time.perf_counter()
    child = subprocess.Popen(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    output = child.stdout.read().decode()
    errors = child.stderr.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(args)} failed:\n{output}\n{errors}")
    return elapsed, usage.ru_maxrss / 1024, output


@contextlib.contextmanager
def scratch_folder(prefix: str, keep: bool):
    """A temporary project folder, deleted afterwards unless `keep`."""
    scratch = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield scratch
    finally:
        if keep:
            print(f"kept {scratch}", file=sys.stderr)
        else:
            shutil.rmtree(scratch, ignore_errors=True)
