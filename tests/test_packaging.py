"""A wheel carries every file the package reads at run time (themes, the app's stylesheet, the
BPF sources), and a copy installed from it, away from this checkout, finds them through
importlib.resources."""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "fluxtui"


def data_files() -> list[str]:
    """Files inside the package that are not Python: what the package reads at run time."""
    return sorted(str(p.relative_to(REPO)) for p in PACKAGE.rglob("*")
                  if p.is_file() and p.suffix not in (".py", ".pyc")
                  and "__pycache__" not in p.parts)


def test_an_installed_wheel_carries_and_loads_its_package_data(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(dist),
                    str(REPO)], check=True, timeout=600, cwd=tmp_path)
    wheel = next(dist.glob("fluxtui-*.whl"))
    names = set(zipfile.ZipFile(wheel).namelist())
    wanted = data_files()
    assert any(name.startswith("fluxtui/themes/") for name in wanted)
    assert not [name for name in wanted if name not in names], "missing from the wheel"

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True,
                   timeout=120)
    python = venv / "bin" / "python"
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "-q",
                    "--no-deps", "--no-index", str(wheel)], check=True, timeout=300)
    # The wheel's dependencies (textual, yaml, ...) from this venv, as plain paths: its .pth
    # files (the editable install of this checkout) are not read from there.
    site = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig."
                                "get_paths()['purelib'])"], check=True, capture_output=True,
                               text=True, timeout=60).stdout.strip())
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    script = textwrap.dedent(f"""
        from importlib.resources import files
        from pathlib import Path

        import fluxtui
        from textual.app import App
        from textual.css.stylesheet import Stylesheet

        from fluxtui.tui.themes import bundled_themes

        assert Path(fluxtui.__file__).is_relative_to({str(venv)!r}), fluxtui.__file__
        print(" ".join(t.name for t in bundled_themes()))
        css = files("fluxtui.tui").joinpath("app.tcss")
        sheet = Stylesheet(variables=App().get_css_variables())  # the theme's $variables
        sheet.add_source(css.read_text(), read_from=(str(css), ""))
        sheet.parse()
        bpf = files("fluxtui.collectors").joinpath("bpf_programs")
        print(sorted(f.name for f in bpf.iterdir()) if bpf.is_dir() else [])
    """)
    run = subprocess.run([str(python), "-c", script], capture_output=True, text=True,
                         timeout=120, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    out = run.stdout.splitlines()
    assert out[0].split() == ["fluxtui-contrast", "fluxtui-dark", "fluxtui-light"]
    bpf_in_source = sorted(p.name for p in (PACKAGE / "collectors" / "bpf_programs").glob("*")
                           if p.is_file())
    assert out[1] == str(bpf_in_source)
