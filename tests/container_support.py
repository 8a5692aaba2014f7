"""A real Docker and a real Podman for the container tests: dockerd started when it is not
running (and stopped again at the end), and a test image imported from Debian's busybox-static
(no registry is reachable). The VM has no systemd: dockerd runs with the cgroupfs driver;
`--privileged` does not work here (no CAP_SYS_RESOURCE), so tests add the capabilities they need.
Podman needs `--cgroup-manager cgroupfs --events-backend file` and explicit ulimits.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from tests.kernel import require, require_root

IMAGE = "localhost/fluxtui-test:busybox"
BUSYBOX = "/bin/busybox"
APPLETS = ("sh", "true", "mount", "nsenter", "hostname", "sleep", "cat", "unshare", "ls")
PODMAN = ("podman", "--cgroup-manager", "cgroupfs", "--events-backend", "file")
PODMAN_RUN = ("--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024")
WAIT_S = 120.0


def _ok(argv: list[str]) -> bool:
    try:
        return subprocess.run(argv, capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _rootfs(where: Path) -> Path:
    root = where / "rootfs"
    for d in ("bin", "mnt", "proc", "sys", "dev", "etc", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    shutil.copy2(BUSYBOX, root / "bin" / "busybox")
    for applet in APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    return root


def import_image(cli: tuple[str, ...]) -> None:
    """The test image, imported once per runtime from a busybox-static root."""
    if _ok([*cli, "image", "inspect", IMAGE]):
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = _rootfs(Path(tmp))
        tar = subprocess.run(["tar", "-C", str(root), "-c", "."], capture_output=True,
                             check=True).stdout
        subprocess.run([*cli, "import", "-", IMAGE], input=tar, capture_output=True,
                       check=True, timeout=300)


def docker() -> Iterator[tuple[str, ...]]:
    """The docker CLI, with a daemon running: started here when it is not, stopped after."""
    require_root()
    require(shutil.which("docker") is not None and shutil.which("dockerd") is not None,
            "docker.io is not installed (scripts/setup_test_os.sh installs it)")
    require(os.path.exists(BUSYBOX), "busybox-static is not installed (setup_test_os.sh)")
    started: subprocess.Popen[bytes] | None = None
    if not _ok(["docker", "info"]):
        fd, log = tempfile.mkstemp(prefix="fluxtui-dockerd-", suffix=".log")
        started = subprocess.Popen(["dockerd", "--storage-driver", "overlay2"], stdout=fd,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        os.close(fd)
        deadline = time.monotonic() + WAIT_S
        while not _ok(["docker", "info"]):
            if started.poll() is not None or time.monotonic() > deadline:
                started.kill()
                started.wait(timeout=30)
                require(False, f"dockerd did not start (log: {log})")
            time.sleep(0.5)
    try:
        import_image(("docker",))
        yield ("docker",)
    finally:
        if started is not None:
            started.terminate()
            try:
                started.wait(timeout=60)
            except subprocess.TimeoutExpired:
                started.kill()
                started.wait(timeout=30)


def podman() -> tuple[str, ...]:
    require_root()
    require(shutil.which("podman") is not None,
            "podman is not installed (scripts/setup_test_os.sh installs it)")
    require(os.path.exists(BUSYBOX), "busybox-static is not installed (setup_test_os.sh)")
    import_image(PODMAN)
    return PODMAN


def run_args(cli: tuple[str, ...]) -> list[str]:
    return [*cli, "run", "--rm", *(PODMAN_RUN if cli == PODMAN else ())]
