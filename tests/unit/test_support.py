"""The test helpers themselves (a failed wait says why), and a rule of the whole suite: no
test skips."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.servers import wait_for

TESTS = Path(__file__).resolve().parents[1]


def test_wait_for_names_the_last_failure() -> None:
    def check() -> bool:
        raise ConnectionRefusedError("nobody listens on 127.0.0.1:1")

    with pytest.raises(AssertionError, match="last failure: ConnectionRefusedError: nobody"):
        wait_for(check, timeout=0.2, interval=0.05)


def test_wait_for_without_an_exception_says_only_the_timeout() -> None:
    with pytest.raises(AssertionError) as caught:
        wait_for(lambda: False, timeout=0.1)
    assert "condition not met within 0.1 s" in str(caught.value)
    assert "last failure" not in str(caught.value)


def test_wait_for_returns_once_true() -> None:
    calls: list[int] = []

    def third_time() -> bool:
        calls.append(1)
        return len(calls) >= 3

    wait_for(third_time, timeout=5, interval=0.01)
    assert len(calls) == 3


# A tier that cannot run fails with the reason; it never skips. These spell every way a
# test module can skip itself or others (written in pieces, so this file does not match).
SKIP_PATTERNS = [
    re.compile(r"\bpytest\s*\.\s*" + "skip" + r"\s*\("),
    re.compile(r"\bmark\s*\.\s*" + "skip" + r"(if)?\b"),
    re.compile(r"\b" + "importor" + r"skip\b"),
    re.compile(r"\b" + "Skip" + r"Test\b"),
    re.compile(r"\bunittest\s*\.\s*" + "skip"),
    re.compile(r"\b(mark|pytest)\s*\.\s*" + "xfail" + r"\b"),
]


def skipping_lines(root: Path) -> list[str]:
    """`path:line: text` of every line under `root` (*.py and conftest) that skips a test."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if any(pattern.search(line) for pattern in SKIP_PATTERNS):
                found.append(f"{path.relative_to(root)}:{number}: {line.strip()}")
    return found


def test_no_test_module_skips() -> None:
    assert TESTS.is_dir()
    assert len(list(TESTS.rglob("test_*.py"))) > 20  # the rule sees the suite
    assert skipping_lines(TESTS) == []


def test_the_skip_check_finds_each_way_to_skip(tmp_path: Path) -> None:
    lines = [
        "    pytest." + "skip('no root')",
        "@pytest.mark." + "skipif(True, reason='x')",
        "@pytest.mark." + "skip",
        "redis = pytest." + "importor" + "skip('redis')",
        "raise unittest." + "Skip" + "Test('x')",
        "@pytest.mark." + "xfail",
    ]
    (tmp_path / "test_x.py").write_text("\n".join(lines) + "\n")
    (tmp_path / "test_fine.py").write_text("def test_forwarder_skips_refusing_targets(): ...\n")
    assert len(skipping_lines(tmp_path)) == len(lines)
