"""Gates for tests that need root or a kernel feature.

On a developer machine without the feature the test is skipped with the reason. In CI
(CI=true, root) every skip is turned into a failure by conftest.py: the suite must really run.
"""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() == "true"


def require(condition: bool, reason: str) -> None:
    """Skip (or, in CI, fail) unless `condition` holds."""
    if not condition:
        if IN_CI:
            pytest.fail(f"CI must run this test, but: {reason}")
        pytest.skip(reason)


def require_root() -> None:
    require(os.geteuid() == 0, "needs root")


def require_bcc() -> None:
    require_root()
    try:
        import bcc  # noqa: F401
    except ImportError as exc:
        require(False, f"bcc not importable: {exc} (make setup installs python3-bpfcc)")
