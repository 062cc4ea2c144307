"""Peak memory of a benchmarked command and every process it starts (the node and its worker).

``resource.RUSAGE_CHILDREN`` reports only the largest single descendant, which would hide a
prepare worker's share, so the process tree's own high-water marks (``VmHWM``) are sampled
while the command runs and summed: an upper bound of the tree's combined peak.
"""

from __future__ import annotations

import pathlib
import resource
import subprocess
import threading
from collections.abc import Sequence


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        try:
            for task in pathlib.Path(f"/proc/{p}/task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (FileNotFoundError, ProcessLookupError):
            continue
    return pids


def _sample(pid: int, peaks: dict[int, float]) -> None:
    for p in _tree(pid):
        try:
            status = pathlib.Path(f"/proc/{p}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                peaks[p] = max(peaks.get(p, 0.0), int(line.split()[1]) / 1024)


def run_sampled(cmd: Sequence[str], *, every_s: float = 0.2,
                cwd: pathlib.Path | None = None) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run ``cmd`` to the end; its result and the summed peak RSS (MB) of its process tree."""
    proc = subprocess.Popen(list(cmd), cwd=cwd, text=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    peaks: dict[int, float] = {}
    out: dict[str, str] = {}

    def collect() -> None:
        out["stdout"], out["stderr"] = proc.communicate()

    # communicate() on a thread drains the pipes while this one samples.
    reader = threading.Thread(target=collect, daemon=True)
    reader.start()
    while reader.is_alive():
        _sample(proc.pid, peaks)
        reader.join(every_s)
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    done = subprocess.CompletedProcess(list(cmd), proc.returncode, out.get("stdout", ""), out.get("stderr", ""))
    return done, max(sum(peaks.values()), largest)
