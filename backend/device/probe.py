"""The device probe behind `omdp devices check`: what this python has and can do.

Runs with the device's python and nothing else, before anything is uploaded: the lab
sends this file's text as `python -c SOURCE WORKDIR`. So it is stdlib only and keeps to
Python 3.6 syntax (it must be able to report that a python is too old). It creates the
work dir (0700), then prints one line `OMDP-PROBE {json}` (a login shell may print other
lines around it) and exits. With `--exit-with-stdin` (what the lab passes) it also exits as
soon as its stdin closes: the lab gave up waiting.

The agent imports it too: `host_facts()` and the /proc/cpuinfo reading live here only.
"""

import json
import os
import platform
import shutil
import socket
import sys
import threading

MARK = "OMDP-PROBE "
# distribution names each module may be installed under (runtimes have several builds)
DISTS = {
    "numpy": ["numpy"],
    "onnx": ["onnx"],
    "onnxruntime": [
        "onnxruntime",
        "onnxruntime-gpu",
        "onnxruntime-openvino",
        "onnxruntime-directml",
        "ort-nightly",
    ],
    "openvino": ["openvino"],
}
# The oldest device stack OMDP supports and tests (docs/devices.md): what Ubuntu 20.04 /
# Debian 11 boards can install. `devices check` says when a device has older.
OLDEST_SUPPORTED = {
    "python": (3, 8),
    "numpy": (1, 21),
    "onnx": (1, 13),
    "onnxruntime": (1, 12),
    "openvino": (2022, 3),
}
CPUINFO_KEYS = ("model name", "Hardware", "Model", "cpu model")


def cpu_model():
    """The CPU's name from /proc/cpuinfo (x86, ARM boards, MIPS), else the machine type."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key.strip() in CPUINFO_KEYS and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.machine()  # not platform.processor(): it forks `uname -p`


def host_facts():
    """Host name, CPU, cores, machine and OS: what a measurement or a check ran on."""
    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = None
    return {
        "hostname": socket.gethostname(),
        "cpu": cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": usable,
        "machine": platform.machine(),
        "os": platform.platform(),
        "python": platform.python_version(),
    }


def packages():
    """Installed version of each module the agent may need (None: missing, "?": present
    but its distribution is not one we know)."""
    try:
        from importlib import metadata, util
    except ImportError:  # python < 3.8: say nothing is there; the version check says why
        return {mod: None for mod in DISTS}
    found = {}
    for mod, dists in DISTS.items():
        if util.find_spec(mod) is None:
            found[mod] = None
            continue
        found[mod] = "?"
        for dist in dists:
            try:
                found[mod] = metadata.version(dist)
                break
            except Exception:
                pass
    return found


def workdir_facts(path):
    """Create the work dir private (0700) and say how much room it has."""
    wd = os.path.abspath(os.path.expanduser(path))
    out = {"workdir": wd, "free_bytes": None, "workdir_error": None}
    try:
        os.makedirs(wd, mode=0o700, exist_ok=True)
        os.chmod(wd, 0o700)
        out["free_bytes"] = shutil.disk_usage(wd).free
    except OSError as exc:
        out["workdir_error"] = f"{wd}: {exc.strerror or exc}"
    return out


def _exit_with_stdin():
    def watch():
        try:
            while os.read(0, 4096):
                pass
        except OSError:
            pass
        os._exit(3)

    t = threading.Thread(target=watch)
    t.daemon = True
    t.start()


def main(argv):
    if argv[:1] == ["--exit-with-stdin"]:
        argv = argv[1:]
        _exit_with_stdin()
    out = {
        "executable": sys.executable,
        "version_info": list(sys.version_info[:3]),
    }
    out.update(host_facts())
    out.update(workdir_facts(argv[0] if argv else "."))
    out["packages"] = packages()
    sys.stdout.write(MARK + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
