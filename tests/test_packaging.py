"""A non-editable install works away from the checkout: every package, the stylesheet and
the shipped themes are in the wheel, and `omdp` runs from another folder."""

from __future__ import annotations

import shutil
import site
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def source_copy(dest: Path) -> Path:
    """The checkout's files as git would ship them (no build/ leftovers, no caches)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    for name in listed:
        if (ROOT / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, dest / name)
    return dest


def test_wheel_installs_and_runs_from_another_folder(tmp_path):
    dist = tmp_path / "dist"
    src = source_copy(tmp_path / "src")
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(dist),
            str(src),
        ],
        capture_output=True,
        text=True,
    )
    assert build.returncode == 0, build.stderr[-2000:]
    (wheel,) = dist.glob("omdp-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    packages = {
        str(p.parent.relative_to(ROOT))
        for p in ROOT.glob("*/**/__init__.py")
        if p.parts[len(ROOT.parts)] in ("backend", "omdp_tui")
    }
    for pkg in packages:
        assert f"{pkg}/__init__.py" in names, f"{pkg} missing from the wheel"
    assert "omdp_tui/app.tcss" in names
    themes = sorted(p.name for p in (ROOT / "themes").glob("*.toml"))
    assert sorted(n.rsplit("/", 1)[1] for n in names if "/share/omdp/themes/" in n) == themes

    env_dir = tmp_path / "venv"
    venv.create(env_dir, with_pip=False)
    py = env_dir / "bin" / "python"
    purelib = subprocess.run(
        [py, "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    # Dependencies come from the test venv's site-packages as a plain path entry (its .pth
    # files, including the editable finder for this checkout, are not processed).
    (Path(purelib) / "deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(py),
            "install",
            "--no-deps",
            "--no-index",
            "-q",
            str(wheel),
        ],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stderr[-2000:]
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = subprocess.run(
        [env_dir / "bin" / "omdp", "--help"], capture_output=True, text=True, cwd=elsewhere
    )
    assert out.returncode == 0 and "demo" in out.stdout, out.stderr
    probe = (
        "import omdp_tui, omdp_tui.themes as t; "
        "print(omdp_tui.__file__); print(sorted(t.load_themes([t.BUILTIN_DIR]).themes))"
    )
    out = subprocess.run([py, "-c", probe], capture_output=True, text=True, cwd=elsewhere)
    assert out.returncode == 0, out.stderr
    where, found = out.stdout.splitlines()
    assert not where.startswith(str(ROOT)), "imported the checkout, not the installed package"
    assert "omdp-dark" in found and "omdp-light" in found
