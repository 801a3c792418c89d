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


# -- temperatures and CPU frequencies (/sys) --------------------------------------------------
# A measurement taken while the CPU ran below FREQ_FLOOR of its maximum frequency, or after
# which a thermal zone was at or past its trip point, is flagged: the device was throttling.

SYS_ROOT_ENV = "OMDP_SYS_ROOT"  # another /sys (a test's fake tree)
FREQ_FLOOR = 0.9
TRIP_TYPES = ("passive", "hot", "critical")
SLOW_GOVERNORS = ("powersave", "conservative")


def sys_root():
    return os.environ.get(SYS_ROOT_ENV) or "/sys"


def _read(path):
    try:
        with open(path) as f:
            return f.read().strip()
    except (OSError, ValueError):
        return None


def _number(path):
    try:
        return int(_read(path))
    except (TypeError, ValueError):
        return None


def thermal_zones():
    """Each thermal zone: its type, temperature and lowest passive/hot/critical trip (°C)."""
    base = os.path.join(sys_root(), "class", "thermal")
    try:
        names = sorted(n for n in os.listdir(base) if n.startswith("thermal_zone"))
    except OSError:
        return []
    zones = []
    for name in names:
        folder = os.path.join(base, name)
        temp = _number(os.path.join(folder, "temp"))
        if temp is None:
            continue
        trips = []
        for i in range(64):
            kind = _read(os.path.join(folder, f"trip_point_{i}_type"))
            if kind is None:
                break
            trip = _number(os.path.join(folder, f"trip_point_{i}_temp"))
            if kind in TRIP_TYPES and trip is not None and trip > 0:
                trips.append(trip)
        zones.append(
            {
                "zone": name,
                "type": _read(os.path.join(folder, "type")) or "",
                "temp_c": temp / 1000.0,
                "trip_c": min(trips) / 1000.0 if trips else None,
            }
        )
    return zones


def cpu_freqs(cpus=None):
    """{cpu: (current kHz, maximum kHz, governor, scaling cap kHz)} of the CPUs that
    expose cpufreq (all of them, or `cpus`)."""
    base = os.path.join(sys_root(), "devices", "system", "cpu")
    if cpus is None:
        try:
            cpus = sorted(int(n[3:]) for n in os.listdir(base) if n[3:].isdigit())
        except OSError:
            return {}
    found = {}
    for cpu in cpus:
        folder = os.path.join(base, f"cpu{cpu}", "cpufreq")
        cur = _number(os.path.join(folder, "scaling_cur_freq"))
        if cur is None:
            cur = _number(os.path.join(folder, "cpuinfo_cur_freq"))
        top = _number(os.path.join(folder, "cpuinfo_max_freq"))
        cap = _number(os.path.join(folder, "scaling_max_freq"))
        if cur is None or not (top or cap):
            continue
        found[cpu] = (cur, top or cap, _read(os.path.join(folder, "scaling_governor")), cap)
    return found


def snapshot(cpus=None):
    """Temperature and frequency now, for one measurement (None: the device exposes
    neither): the hottest zone, whether a zone is at or past its trip point, and the
    slowest of `cpus` relative to its maximum."""
    out = {}
    zones = thermal_zones()
    if zones:
        hottest = max(zones, key=lambda z: z["temp_c"])
        over = [z for z in zones if z["trip_c"] is not None and z["temp_c"] >= z["trip_c"]]
        out["temp_c"] = hottest["temp_c"]
        out["zone"] = (over or [hottest])[0]["type"] or hottest["zone"]
        trips = [z["trip_c"] for z in zones if z["trip_c"] is not None]
        out["trip_c"] = (over[0]["trip_c"] if over else min(trips)) if trips else None
        out["over_trip"] = bool(over)
    freqs = cpu_freqs(cpus)
    if freqs:
        cpu, (cur, top, _, _) = min(freqs.items(), key=lambda kv: kv[1][0] / kv[1][1])
        out["cpu"] = cpu
        out["cur_mhz"] = round(cur / 1000.0, 1)
        out["max_mhz"] = round(top / 1000.0, 1)
        out["freq_ratio"] = round(cur / float(top), 4)
    return out or None


def throttle_reason(conditions):
    """Why a measurement taken under these conditions ({"before": snapshot, "after":
    snapshot}) cannot be trusted, or None."""
    for when in ("before", "after"):
        s = (conditions or {}).get(when) or {}
        ratio = s.get("freq_ratio")
        if ratio is not None and ratio < FREQ_FLOOR:
            return (
                f"CPU {s.get('cpu')} at {int(ratio * 100)}% of its maximum frequency {when} "
                f"timing ({s.get('cur_mhz'):g} of {s.get('max_mhz'):g} MHz)"
            )
    after = (conditions or {}).get("after") or {}
    if after.get("over_trip"):
        return "{} at {:g} °C reached its trip point ({:g} °C) while timing".format(
            after.get("zone") or "a thermal zone",
            after.get("temp_c"),
            after.get("trip_c"),
        )
    return None


def flag_risks(cpus=None):
    """What would get this device's measurements flagged, as it stands now."""
    risks = []
    for zone in thermal_zones():
        if zone["trip_c"] is not None and zone["temp_c"] >= zone["trip_c"] - 5:
            risks.append(
                "{} is at {:g} °C, near or past its trip point {:g} °C: let it cool".format(
                    zone["type"] or zone["zone"], zone["temp_c"], zone["trip_c"]
                )
            )
    freqs = cpu_freqs(cpus)
    capped = sorted(c for c, (_, top, _, cap) in freqs.items() if cap and cap < FREQ_FLOOR * top)
    if capped:
        risks.append(
            f"CPU {','.join(map(str, capped))} capped below {int(FREQ_FLOOR * 100)}% of its "
            "maximum frequency (scaling_max_freq): raise the cap"
        )
    slow = sorted({g for _, _, g, _ in freqs.values() if g in SLOW_GOVERNORS})
    if slow:
        risks.append(
            "governor {} may keep the CPU below its maximum frequency: "
            "`cpupower frequency-set -g performance`".format("/".join(slow))
        )
    return risks


def cpu_state():
    """Governor(s), current temperature and flag risks, for `devices check`."""
    freqs = cpu_freqs()
    zones = thermal_zones()
    governors = sorted({g for _, _, g, _ in freqs.values() if g})
    return {
        "governor": "/".join(governors) or None,
        "temp_c": max(z["temp_c"] for z in zones) if zones else None,
        "flag_risks": flag_risks(),
    }


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


def accelerators(runtime):
    """(the execution providers / OpenVINO devices `runtime` has here, or [], and why
    not when it cannot say). Imports the runtime: only the one the device uses."""
    try:
        if runtime == "onnxruntime":
            import onnxruntime

            return list(onnxruntime.get_available_providers()), None
        if runtime == "openvino":
            # its model converter's telemetry blocks exit without a network: not needed
            sys.modules.setdefault("openvino.tools.ovc", None)
            import openvino

            core = getattr(openvino, "Core", None)
            if core is None:  # 2022.x: the API lives in openvino.runtime
                from openvino.runtime import Core as core
            return list(core().available_devices), None
    except Exception as exc:
        return [], f"{type(exc).__name__}: {str(exc)[:300]}"
    return [], None


def main(argv):
    if argv[:1] == ["--exit-with-stdin"]:
        argv = argv[1:]
        _exit_with_stdin()
    runtime = None
    if argv[:1] == ["--runtime"]:
        runtime, argv = argv[1], argv[2:]
    out = {
        "executable": sys.executable,
        "version_info": list(sys.version_info[:3]),
    }
    out.update(host_facts())
    out.update(workdir_facts(argv[0] if argv else "."))
    out["packages"] = packages()
    if runtime:
        found, error = accelerators(runtime)
        out["accelerators"] = {runtime: found}
        out["accelerator_error"] = error
    out.update(cpu_state())
    sys.stdout.write(MARK + json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
