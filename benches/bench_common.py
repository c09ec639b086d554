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
    elapsed, rss, output, _ = run_logged(argv, cwd)
    return elapsed, rss, output


def run_logged(argv: list, cwd: Path, env: dict = None) -> tuple:
    """Runs `argv` in `cwd` with `env` added to the environment; returns (seconds, peak RSS
    in MiB, stdout, stderr). Exits on failure. Output goes to files while it runs: a pipe
    nobody reads would fill up and stall a chatty child."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.perf_counter()
        child = subprocess.Popen(argv, cwd=cwd, stdout=out, stderr=err, env={**os.environ, **(env or {})})
        _, status, usage = os.wait4(child.pid, 0)
        elapsed = time.perf_counter() - started
        out.seek(0)
        err.seek(0)
        output, errors = out.read().decode(), err.read().decode()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{' '.join(argv[1:])} failed:\n{output}\n{errors}")
    return elapsed, usage.ru_maxrss / 1024, output, errors


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


NUMERIC = [f"x{i:02d}" for i in range(16)]
CATEGORIES = {
    "plan": ["monthly", "yearly", "none", "trial"],
    "region": ["north", "south", "east", "west", "central"],
    "segment": ["smb", "mid", "enterprise"],
    "channel": [f"partner_{i:02d}" for i in range(40)],
}


def write_features_csv(path: Path, rows: int, seed: int = 7, null_share: float = 0.01) -> None:
    """A seeded extract of `rows` customers: an id, 16 numeric features (each null in
    about `null_share` of rows), 4 categorical ones with 3 to 40 values, and a binary label."""
    import random

    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write("id," + ",".join(NUMERIC) + "," + ",".join(CATEGORIES) + ",label\n")
        chunk = []
        for i in range(rows):
            xs = [rng.gauss(0, 1) for _ in NUMERIC]
            picks = [values[rng.randrange(len(values))] for values in CATEGORIES.values()]
            risk = xs[0] - 0.8 * xs[1] + 0.5 * xs[2] * xs[3] + (0.7 if picks[0] == "monthly" else 0) + rng.gauss(0, 1)
            cells = ["" if rng.random() < null_share else f"{x:.4f}" for x in xs]
            chunk.append(f"C{i:08d}," + ",".join(cells) + "," + ",".join(picks) + f",{str(risk > 0.5).lower()}\n")
            if len(chunk) == 100_000:
                out.write("".join(chunk))
                chunk.clear()
        out.write("".join(chunk))
