"""A fresh Debian 12 host for the install test: the root ``debian_root.sh`` debootstraps once, booted by
``systemd-nspawn`` with its own systemd as PID 1.

Each boot starts from the root as built: writes go to a tmpfs over it (``--volatile=overlay``) and vanish at
shutdown. The machine's network is a veth to this host in a namespace of its own (no route beyond this host: it
installs from what is in the root and a folder of wheels), and commands run in it with ``nsenter``, as root, in
a login's plain environment.

One machine at a time on this host: this host runs no systemd, so ``--keep-unit`` puts every container's
control groups under the one nspawn was started in, and two containers' ``system.slice`` would be the same
folder. :func:`one_at_a_time` holds the root's lock (which ``debian_root.sh`` also takes to build) while a
machine lives, and clears what a killed run left behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from waiting import HANG

IMAGE = Path(os.environ.get("HOTLINE_EVAL_DEBIAN_ROOT", "/opt/hotline-eval-debian-12"))
BUILD_SCRIPT = Path(__file__).with_name("debian_root.sh")
NAME = "he-install"  # the machines' and their network namespaces' prefix
_PR_SET_PDEATHSIG = 1
# The root with a tmpfs over it, so nothing a run writes stays. --keep-unit and --register=no: this host runs no
# systemd to make a scope or register the machine.
NSPAWN = ("systemd-nspawn", "--quiet", "-D", str(IMAGE), "--volatile=overlay", "--register=no", "--keep-unit")


class RootUnavailable(RuntimeError):
    """The Debian root cannot be had here: why."""


@contextlib.contextmanager
def one_at_a_time(asterisk: Path) -> Iterator[None]:
    """The root, built or checked (``debian_root.sh``), and this host's only machine until the block ends."""
    if os.geteuid() != 0:
        raise RootUnavailable("the install tier boots a container: it needs root")
    with open(f"{IMAGE}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held until the machine is gone
        built = subprocess.run(["bash", str(BUILD_SCRIPT), str(IMAGE), str(asterisk)], capture_output=True,
                               text=True, timeout=HANG, env=os.environ | {"HOTLINE_EVAL_DEBIAN_ROOT_LOCKED": "1"})
        if built.returncode != 0:
            raise RootUnavailable(f"no Debian root at {IMAGE}: {built.stdout[-1000:]}{built.stderr[-2000:]}")
        _clear_leftovers()
        yield


def _clear_leftovers() -> None:
    """A run killed before it shut its machine down leaves the machine's processes in their network namespace,
    and the namespace: under the lock, no live run has one."""
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    for namespace in (line.split()[0] for line in listed.stdout.splitlines() if line.startswith(NAME)):
        pids = subprocess.run(["ip", "netns", "pids", namespace], capture_output=True, text=True).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(int(pid), signal.SIGKILL)
        subprocess.run(["ip", "netns", "del", namespace], capture_output=True)


def _die_with_the_test() -> None:
    """In nspawn, before exec: SIGTERM (a clean poweroff) when the test process dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class Machine:
    """The root booted; ``binds`` are host folders it sees read-only (host path: path inside)."""

    def __init__(self, home: Path, binds: dict[Path, str]) -> None:
        tag = os.getpid() % 16384
        self.name = self.netns = f"{NAME}-{tag}"
        self.link = f"hei{tag}"
        self.host_address = f"10.213.{tag // 64}.{tag % 64 * 4 + 1}"
        self.address = f"10.213.{tag // 64}.{tag % 64 * 4 + 2}"
        self.console = home / "console.log"
        self.binds = binds
        self.process: subprocess.Popen[bytes] | None = None
        self.pid = 0

    def boot(self) -> None:
        """Up to ``multi-user.target`` (``systemctl is-system-running --wait``)."""
        subprocess.run(["ip", "netns", "add", self.netns], check=True)
        for command in (f"ip link add {self.link} type veth peer name host0 netns {self.netns}",
                        f"ip addr add {self.host_address}/30 dev {self.link}", f"ip link set {self.link} up",
                        f"ip -n {self.netns} addr add {self.address}/30 dev host0",
                        f"ip -n {self.netns} link set host0 up", f"ip -n {self.netns} link set lo up"):
            subprocess.run(command.split(), check=True)
        binds = [f"--bind-ro={source}:{target}" for source, target in self.binds.items()]
        with self.console.open("wb") as console:
            self.process = subprocess.Popen(
                [*NSPAWN, "--boot", f"--machine={self.name}", "--console=read-only",
                 f"--network-namespace-path=/run/netns/{self.netns}", *binds],
                stdout=console, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, preexec_fn=_die_with_the_test)
        deadline = time.monotonic() + HANG
        while not self.pid:
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the machine did not boot:\n{self.console_text()}")
            self.pid = self._init() or 0
            time.sleep(0.2)
        state = self.run("systemctl is-system-running --wait", check=False)
        if state.stdout.strip() not in ("running", "degraded"):
            raise RuntimeError(f"the machine booted {state.stdout.strip()!r}:\n{self.console_text()}")

    def _init(self) -> int | None:
        """The machine's systemd (PID 1 inside), a child of nspawn; None while it is not there yet."""
        assert self.process is not None
        children = subprocess.run(["pgrep", "-P", str(self.process.pid)], capture_output=True, text=True)
        for pid in children.stdout.split():
            try:  # nspawn's short-lived intermediate child may be gone already
                if Path(f"/proc/{pid}/comm").read_text().strip() == "systemd":
                    return int(pid)
            except OSError:
                continue
        return None

    def run(self, script: str, *, input: str | None = None, check: bool = True,
            timeout: float = HANG) -> subprocess.CompletedProcess[str]:
        """``script`` by bash as root in the machine, in /root. In a session of its own and without this
        process's terminal, so a password prompt in it reads its standard input, as under an install script."""
        done = subprocess.run(
            ["nsenter", f"--target={self.pid}", "--mount", "--uts", "--ipc", "--net", "--pid", "--cgroup",
             "--root", "--wd", "--", "/usr/bin/env", "-i", "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:"
             "/sbin:/bin", "HOME=/root", "LANG=C.UTF-8", "/bin/bash", "-o", "pipefail", "-euc",
             f"cd /root\n{script}"],
            input=input, stdin=subprocess.DEVNULL if input is None else None, capture_output=True, text=True,
            timeout=timeout, start_new_session=True)
        if check and done.returncode != 0:
            raise AssertionError(f"in the machine, exit {done.returncode}:\n{script}\n--- stdout\n"
                                 f"{done.stdout[-4000:]}\n--- stderr\n{done.stderr[-4000:]}")
        return done

    def write(self, path: str, text: str, mode: str = "0644") -> None:
        self.run(f"install -D -m {mode} /dev/stdin {path}", input=text)

    def console_text(self) -> str:
        return self.console.read_text(encoding="utf-8", errors="replace")[-6000:]

    def shut_down(self) -> None:
        """SIGTERM to nspawn, which powers the machine off (its systemd stops every unit); the tmpfs goes with it."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=HANG)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        subprocess.run(["ip", "netns", "del", self.netns], capture_output=True)
