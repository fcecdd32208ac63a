"""Provenance of a measured result: date, machine, CPU, versions and the command that ran it.
Shared by the benchmark scripts and by CLI commands that write results (eval-bpd --json)."""

import datetime as _dt
import importlib
import os
import platform
import sys


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def stamp(command: str, argv: list[str] | None = None, extra_versions: dict | None = None) -> dict:
    """Date, machine, CPU, versions and `command` (how a user would type it again)."""
    argv = sys.argv if argv is None else argv
    u = platform.uname()
    versions = {"python": sys.version.split()[0]}
    for mod in ("numpy", "PIL", "imagecodecs", "matplotlib", "torch", "selfcodec"):
        try:
            m = sys.modules.get(mod) or importlib.import_module(mod)
            versions["pillow" if mod == "PIL" else mod] = getattr(m, "__version__", "?")
        except Exception:
            versions["pillow" if mod == "PIL" else mod] = None
    if extra_versions:
        versions.update({k: v for k, v in extra_versions.items() if k not in versions})
    try:
        ncpu = len(os.sched_getaffinity(0))
    except Exception:
        ncpu = os.cpu_count()
    try:
        load = os.getloadavg()
    except OSError:
        load = None
    return {
        "date": _dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": command,
        "argv": list(argv),
        "cwd": os.getcwd(),
        "platform": {
            "system": u.system, "release": u.release, "machine": u.machine,
            "node": u.node, "platform": platform.platform(),
            "python_implementation": platform.python_implementation(),
        },
        "cpu_model": cpu_model(),
        "cpus_available": ncpu,
        "loadavg_at_start": load,
        "versions": versions,
    }
