"""Peak resident memory of the current process."""

import resource
from pathlib import Path


def peak_rss_mb() -> float:
    """This process's peak RSS in MB: ``VmHWM`` on Linux, which (unlike ``ru_maxrss``) does
    not carry over the parent's peak into a spawned child."""
    status = Path("/proc/self/status")
    if status.exists():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
