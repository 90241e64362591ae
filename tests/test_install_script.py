"""`scripts/install-system-deps.sh` waits for apt's locks instead of failing.

The script runs with a PATH of a few real tools and a fake `apt-get` that reports its lock
held for its first runs, as apt does while unattended-upgrades works on a fresh machine.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

SCRIPT = Path(__file__).parent.parent / "scripts" / "install-system-deps.sh"
TOOLS = ("ls", "id", "grep", "sleep", "cat")

FAKE_APT_GET = """#!{bash}
log={log}
count_file={count}
n=0
if [ -f "$count_file" ]; then n=$(<"$count_file"); fi
echo "$*" >>"$log"
if [ "$FAKE_FAILURE" = other ]; then echo "E: Unable to locate package sip-tester" >&2; exit 100; fi
if [ "$n" -lt "$FAKE_LOCKED_RUNS" ]; then
  echo $((n + 1)) >"$count_file"
  echo "E: Could not get lock /var/lib/apt/lists/lock. It is held by process 4242 (apt-get)" >&2
  echo "E: Unable to lock directory /var/lib/apt/lists/" >&2
  exit 100
fi
exit 0
"""


def run_script(tmp_path: Path, locked_runs: int, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in TOOLS:
        found = shutil.which(tool)
        assert found is not None, tool
        (bin_dir / tool).symlink_to(found)
    bash = shutil.which("bash")
    assert bash is not None
    log = tmp_path / "apt.log"
    fake = bin_dir / "apt-get"
    fake.write_text(FAKE_APT_GET.format(bash=bash, log=log, count=tmp_path / "count"))
    fake.chmod(0o755)
    sudo = bin_dir / "sudo"
    sudo.write_text(f'#!{bash}\nexec "$@"\n')
    sudo.chmod(0o755)
    result = subprocess.run(
        [bash, str(SCRIPT)],
        env={
            "PATH": str(bin_dir),
            "HOME": str(tmp_path),
            "FAKE_LOCKED_RUNS": str(locked_runs),
            "APT_LOCK_RETRY_SECONDS": "0.05",
            **env,
        },
        capture_output=True, text=True, timeout=120,
    )
    calls = log.read_text().splitlines() if log.exists() else []
    return result, calls


def test_waits_while_the_lists_lock_is_held(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, locked_runs=3)
    assert result.returncode == 0, result.stderr
    assert [call.split()[2] for call in calls] == ["update"] * 4 + ["install"]
    assert all("-o DPkg::Lock::Timeout=600" in call for call in calls)
    assert "sip-tester" in calls[-1] and "baresip" in calls[-1] and "chromium" in calls[-1]
    assert "waiting" in result.stderr


def test_gives_up_at_the_timeout(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, locked_runs=1000, APT_LOCK_TIMEOUT="0")
    assert result.returncode == 100
    assert calls == ["-o DPkg::Lock::Timeout=0 update -qq"]
    assert "Could not get lock" in result.stderr


def test_other_failures_are_not_retried(tmp_path: Path) -> None:
    result, calls = run_script(tmp_path, locked_runs=0, FAKE_FAILURE="other")
    assert result.returncode == 100 and len(calls) == 1
    assert "Unable to locate package" in result.stderr


def test_nothing_to_do_when_everything_is_there() -> None:
    if not all(shutil.which(tool) for tool in ("sipp", "baresip", "espeak-ng", "sox", "chromium", "tcpdump", "gcc")):
        return
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert result.returncode == 0 and result.stdout == ""
