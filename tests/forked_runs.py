"""`python train.py ARGS` (and eval.py) for the tests, without paying their imports on every run.

A user's run spends about 10 CPU seconds importing Lightning, torch, torchmetrics and torchvision before it
trains (benchmarks/README.md, "Fixed costs of a run"); the suite starts train.py over a hundred times, so on
2 cores the imports alone took about a third of its time. Each pytest worker therefore keeps one server
process that has imported what train.py imports, in train.py's order, and has started no thread (numpy's
OpenBLAS would start its pool at import: the server sets OPENBLAS_NUM_THREADS=1, so numpy's own matrix
products run on one thread in these runs; torch's threads follow OMP_NUM_THREADS as usual); each run is
a fork of it that becomes `python train.py ARGS`: its own process, with the test's working folder,
environment, argv, sys.path[0], fresh `random` and numpy seeds, stdout and stderr in files (no TTY, as with
`capture_output`), the interpreter's normal exit (atexit handlers run) and its exit status. Data-loader
workers and torch.compile's compilers start from that process as they do from a user's. DDP's other ranks,
which the DDP launchers start as `python train.py ...` (noisylab.utils.ddp) or `python eval.py ...`
(Lightning's own) processes, are forks of the server too: the run asks the server for them, and gets back
an object with the Popen methods Lightning uses (poll, wait, send_signal, returncode); they write into the
run's stdout and stderr files, as the child processes of a user's run write into its terminal. What
importing Lightning reads from the environment (its rank, from LOCAL_RANK) is set again in each fork.

What a fork cannot show is what happens before and during those imports: output printed while importing
and the imports a command does before Hydra parses. Tests of those start a fresh interpreter
(`run_train(..., fresh=True)`, or subprocess directly), and NOISYLAB_TESTS_FRESH=1 makes every run fresh.
"""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "train.py"
EVAL = REPO / "eval.py"
SCRIPTS = {str(TRAIN), str(EVAL)}  # the entry points a server runs: both import what the server has imported


# ------------------------------------------------------------------------------------------------ server
# What the runs import, imported once by the server: train.py's and eval.py's own imports, then what their
# task functions import (train.py's order: noisylab.quiet, then noisylab.train), then what a run imports on
# its way (the methods, the metrics and their scikit-learn parts, the evaluation). A forked run then finds
# them loaded, as a second `import` in one interpreter does; about 2 CPU seconds per run.
WARM_MODULES = ("hydra", "omegaconf", "noisylab.cli", "noisylab.utils.sweep", "noisylab.quiet", "noisylab.train",
                "noisylab.data", "noisylab.data.sources", "noisylab.losses", "noisylab.methods", "noisylab.metrics.ood",
                "noisylab.metrics.detectors", "noisylab.samples", "noisylab.evaluate", "noisylab.epoch_log",
                "sklearn.datasets", "sklearn.model_selection", "sklearn.mixture")


def _serve(requests: int, replies: int) -> int | None:
    """Answer run requests until the requests pipe closes; returns the exit status in a forked child (a run's
    or a DDP rank's), None in the server."""
    import importlib
    import random

    import numpy as np

    for module in WARM_MODULES:
        importlib.import_module(module)
    if len(os.listdir("/proc/self/task")) != 1:  # forking a process with threads could copy a held lock
        os.write(replies, b'{"error": "the server started threads while importing; runs need fresh=True"}\n')
        return None
    os.write(replies, b'{"ready": true}\n')
    stream = os.fdopen(requests, "r")
    for line in stream:
        request = json.loads(line)
        _reap(wait_for=None)  # ranks of earlier runs that outlived them
        sys.stdout.flush()
        sys.stderr.flush()
        rank_requests, rank_requests_write = os.pipe()
        rank_replies_read, rank_replies = os.pipe()
        pid = os.fork()
        if pid == 0:
            for fd in (rank_requests, rank_replies, replies):
                os.close(fd)
            stream.close()
            return _become_the_run(request, random, np, spawner=(rank_requests_write, rank_replies_read))
        os.close(rank_requests_write)
        os.close(rank_replies_read)
        os.write(replies, (json.dumps({"pid": pid}) + "\n").encode())
        code, rank_request = _supervise(pid, request, rank_requests, rank_replies)
        if rank_request is not None:  # this process is a DDP rank forked by _supervise
            stream.close()
            os.close(replies)
            return _become_the_run(rank_request, random, np)
        os.write(replies, (json.dumps({"returncode": code}) + "\n").encode())
    return None


_RANKS: set[int] = set()  # DDP ranks forked by this server, until reaped


def _reap(wait_for: int | None) -> tuple[dict[int, int], int | None]:
    """Exit statuses of finished children: ({rank pid: status}, the status of `wait_for` if it ended)."""
    ranks, status = {}, None
    while True:
        try:
            pid, raw = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            break
        if pid == 0:
            break
        code = os.waitstatus_to_exitcode(raw)
        if pid == wait_for:
            status = code
        elif pid in _RANKS:
            _RANKS.discard(pid)
            ranks[pid] = code
    return ranks, status


def _supervise(run: int, request: dict[str, Any], rank_requests: int,
               rank_replies: int) -> tuple[int | None, dict[str, Any] | None]:
    """Serve the run's requests for DDP ranks until it ends: (its exit status, None) in the server, or
    (None, the rank's request) in a newly forked rank."""
    pending, listening = b"", True
    try:
        while True:
            if listening and select.select([rank_requests], [], [], 0.05)[0]:
                chunk = os.read(rank_requests, 65536)
                listening = bool(chunk)  # empty: the run closed its end (it is exiting)
                pending += chunk
                while b"\n" in pending:
                    line, pending = pending.split(b"\n", 1)
                    rank = {**json.loads(line), "stdout": request["stdout"], "stderr": request["stderr"],
                            "append": True}
                    sys.stdout.flush()
                    sys.stderr.flush()
                    pid = os.fork()
                    if pid == 0:
                        return None, rank
                    _RANKS.add(pid)
                    _tell(rank_replies, {"pid": pid})
            elif not listening:
                time.sleep(0.05)
            ended, status = _reap(wait_for=run)
            for pid, code in ended.items():
                _tell(rank_replies, {"exited": pid, "returncode": code})
            if status is not None:
                return status, None
    finally:  # in the server and in a new rank alike: these pipes were the supervisor's
        os.close(rank_requests)
        os.close(rank_replies)


def _tell(fd: int, message: dict[str, Any]) -> None:
    try:
        os.write(fd, (json.dumps(message) + "\n").encode())
    except OSError:  # the run has exited: nobody to tell
        pass


def _become_the_run(request: dict[str, Any], random: Any, np: Any, spawner: tuple[int, int] | None = None) -> int:
    import runpy
    import traceback

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    # Appending: the run and its DDP ranks write into the same two files, none over another's lines.
    opening = os.O_WRONLY | os.O_CREAT | os.O_APPEND | (0 if request.get("append") else os.O_TRUNC)
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, opening, 0o644)
        os.dup2(target, fd)
        os.close(target)
    from lightning.fabric.utilities.rank_zero import _get_rank, rank_zero_only

    rank_zero_only.rank = _get_rank() or 0  # what importing Lightning sets from the environment (LOCAL_RANK, ...)
    if spawner is not None:  # both launchers: noisylab's (train.py) and Lightning's own (eval.py)
        import lightning.pytorch.strategies.launchers.subprocess_script as lightning_launcher

        import noisylab.utils.ddp

        noisylab.utils.ddp.subprocess = lightning_launcher.subprocess = _RankSpawner(*spawner)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    script = request["script"]  # every request names its script (a rank's too)
    sys.argv = [script, *request["args"]]
    sys.path[0] = str(REPO)  # what `python train.py` puts first
    random.seed()
    np.random.seed()
    try:
        runpy.run_path(script, run_name="__main__")
        code = 0
    except SystemExit as stop:
        if stop.code is None or isinstance(stop.code, int):
            code = stop.code or 0
        else:
            print(stop.code, file=sys.stderr)
            code = 1
    except BaseException:  # noqa: BLE001  # what the interpreter does with an uncaught exception
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    return code


class _Messages:
    """JSON lines arriving on a pipe, one message at a time."""

    def __init__(self, fd: int) -> None:
        self.fd, self.pending = fd, b""

    def next(self, timeout: float) -> dict[str, Any]:
        """The next message; TimeoutError when none came within `timeout` seconds, EOFError when the writer
        closed the pipe."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.pending:
            if not select.select([self.fd], [], [], max(deadline - time.monotonic(), 0))[0]:
                raise TimeoutError
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise EOFError("the train.py server exited")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)


class _RankSpawner:
    """`subprocess` as the DDP launchers see it inside a forked run: `Popen([python, train.py or eval.py, ...])`,
    how they start the other ranks, asks the server for a fork instead; anything else is subprocess's own."""

    def __init__(self, requests: int, replies: int) -> None:
        self.requests, self.replies = requests, _Messages(replies)
        self.exited, self.lock = {}, threading.Lock()  # Lightning polls from a thread

    def __getattr__(self, name: str) -> Any:
        return getattr(subprocess, name)

    def Popen(self, args: list[str], env: dict[str, str] | None = None, cwd: str | None = None,  # noqa: N802
              **kwargs: Any) -> Any:
        if kwargs or len(args) < 2 or str(args[0]) != sys.executable or str(args[1]) not in SCRIPTS:
            return subprocess.Popen(args, env=env, cwd=cwd, **kwargs)
        with self.lock:
            request = {"script": str(args[1]), "args": [str(a) for a in args[2:]],
                       "env": dict(os.environ if env is None else env), "cwd": str(cwd or os.getcwd())}
            os.write(self.requests, (json.dumps(request) + "\n").encode())
            while True:
                message = self._next(timeout=60)
                if message is None:
                    raise OSError("the train.py server did not start the DDP rank")
                if "pid" in message:
                    return _ForkedRank(self, message["pid"], args)

    def _next(self, timeout: float) -> dict[str, Any] | None:
        """The server's next message (an exit status is recorded on the way), or None after `timeout`."""
        try:
            message = self.replies.next(timeout)
        except (TimeoutError, EOFError):
            return None
        if "exited" in message:
            self.exited[message["exited"]] = message["returncode"]
        return message

    def returncode(self, pid: int, timeout: float) -> int | None:
        with self.lock:
            deadline = time.monotonic() + timeout
            while pid not in self.exited and self._next(max(deadline - time.monotonic(), 0)) is not None:
                pass
            return self.exited.get(pid)


class _ForkedRank:
    """The Popen methods Lightning and noisylab.utils.ddp use, for a DDP rank the server forked."""

    def __init__(self, spawner: _RankSpawner, pid: int, args: list[str]) -> None:
        self.spawner, self.pid, self.args, self.returncode = spawner, pid, args, None

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self.spawner.returncode(self.pid, timeout=0)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            self.returncode = self.spawner.returncode(self.pid, timeout=1e9 if timeout is None else timeout)
        if self.returncode is None:
            raise subprocess.TimeoutExpired(self.args, timeout)
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


# ------------------------------------------------------------------------------------------------ client
class ForkedRuns:
    """The pytest worker's side: starts the server on first use, and again if it died."""

    def __init__(self) -> None:
        self.server: subprocess.Popen | None = None
        self.available = sys.platform == "linux"  # fork, /proc; elsewhere every run is a fresh interpreter

    def _start(self) -> None:
        requests_read, self.requests = os.pipe()
        self.replies, replies_write = os.pipe()
        self.server = subprocess.Popen(
            [sys.executable, str(Path(__file__)), "--serve", str(requests_read), str(replies_write)],
            cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            pass_fds=(requests_read, replies_write), env={**os.environ, "OPENBLAS_NUM_THREADS": "1"})
        os.close(requests_read)
        os.close(replies_write)
        self.messages = _Messages(self.replies)
        reply = self.messages.next(timeout=600)
        if not reply.get("ready"):  # every run of this worker starts a fresh interpreter then
            self.available = False
            warnings.warn(f"forked train.py runs are off: {reply.get('error', reply)}", stacklevel=3)

    def run(self, args: list[str], cwd: Path, timeout: float,
            script: Path = TRAIN) -> subprocess.CompletedProcess | None:
        """The finished `python SCRIPT ARGS` (train.py or eval.py), or None when no server could start (run it
        fresh)."""
        if self.server is None or self.server.poll() is not None:
            self._start()
            if not self.available:
                return None
        command = [sys.executable, str(script), *args]
        with tempfile.TemporaryDirectory(prefix="noisylab-run-output-") as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            request = {"script": str(script), "args": args, "cwd": str(cwd), "env": dict(os.environ),
                       "stdout": str(out), "stderr": str(err)}
            os.write(self.requests, (json.dumps(request) + "\n").encode())
            pid = self.messages.next(timeout=60)["pid"]
            try:
                returncode = self.messages.next(timeout=timeout)["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self.messages.next(timeout=60)
                raise subprocess.TimeoutExpired(command, timeout, out.read_text(), err.read_text()) from None
            return subprocess.CompletedProcess(command, returncode, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    sys.path[0] = str(REPO)
    exit_code = _serve(int(sys.argv[2]), int(sys.argv[3]))
    if exit_code is not None:
        sys.exit(exit_code)  # a forked run ends as an interpreter does: atexit handlers, flushed files
