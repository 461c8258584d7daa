"""`--profile`: cProfile for work the driver does itself, a sampling profiler attached to
the worker processes for the rest. Output goes to var/bench/profile/."""

import cProfile
import io
import pstats
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.env import VAR

OUT = VAR / "profile"


def cprofile(name: str, call) -> Path:
    OUT.mkdir(parents=True, exist_ok=True)
    profiler = cProfile.Profile()
    profiler.runcall(call)
    text = io.StringIO()
    stats = pstats.Stats(profiler, stream=text).strip_dirs()
    stats.sort_stats("cumulative").print_stats(45)
    stats.sort_stats("tottime").print_stats(30)
    path = OUT / f"{name}.txt"
    path.write_text(text.getvalue())
    return path


def sampler_start(name: str, pid: int) -> subprocess.Popen | None:
    """Sample every process under `pid`, waiting included, so the profile shows where the
    wall time goes (collapsed stacks); None if no sampler is installed."""
    tool = Path(sys.executable).parent / "py-spy"
    if not tool.exists():
        return None
    OUT.mkdir(parents=True, exist_ok=True)
    argv = [str(tool), "record", "--pid", str(pid), "--subprocesses", "--format", "raw",
            "--rate", "200", "--idle", "--nonblocking", "--output", str(OUT / f"{name}.folded")]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def sampler_stop(proc: subprocess.Popen | None, name: str, focus: str = "") -> None:
    if proc is None:
        return
    proc.send_signal(2)  # SIGINT: the sampler writes its output and exits
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
    folded = OUT / f"{name}.folded"
    if folded.exists():
        (OUT / f"{name}.txt").write_text(summarize(folded, focus))


def summarize(folded: Path, focus: str = "", top: int = 60) -> str:
    """Inclusive and self sample shares per function from collapsed stacks, counting only
    stacks that pass through `focus` (e.g. the task function: idle waits drop out)."""
    inclusive, own, total = Counter(), Counter(), 0
    for line in folded.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or focus not in stack:
            continue
        n = int(count)
        frames = stack.split(";")
        total += n
        own[frames[-1]] += n
        for frame in set(frames):
            inclusive[frame] += n
    total = total or 1
    lines = [f"{total} samples through '{focus}'", "", "inclusive:"]
    lines += [f"{100 * n / total:6.1f}%  {f}" for f, n in inclusive.most_common(top)]
    lines += ["", "self:"]
    lines += [f"{100 * n / total:6.1f}%  {f}" for f, n in own.most_common(top)]
    return "\n".join(lines) + "\n"
