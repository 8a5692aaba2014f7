#!/bin/bash
# A developer's virtualenv under /tmp runs pytest on a tiny test file.
. "$(dirname "$0")/../lib.sh"
[ -n "${FLUX_PYTHON:-}" ] && "$FLUX_PYTHON" -c 'import pytest' 2>/dev/null \
    || { echo "scenario: needs a Python with pytest (FLUX_PYTHON)" >&2; exit 77; }
"$FLUX_PYTHON" -m venv --without-pip "$WORK/.venv"
site=$("$WORK/.venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$FLUX_PYTHON" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])' > "$site/outer.pth"
cat > test_tiny.py <<'PY'
def add(a, b):
    return a + b


def test_add():
    assert add(2, 3) == 5


def test_strings():
    assert "flux" + "tui" == "fluxtui"
PY
"$WORK/.venv/bin/python" -m pytest -q -p no:cacheprovider test_tiny.py
