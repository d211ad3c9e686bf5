"""`python train.py ARGS` for the tests, without paying train.py's imports on every run.

A user's run spends about 10 CPU seconds importing Lightning, torch, torchmetrics and torchvision before it
trains (benchmarks/README.md, "Fixed costs of a run"); the suite starts train.py over a hundred times, so on
2 cores the imports alone took about a third of its time. Each pytest worker therefore keeps one server
process that has imported what train.py imports, in train.py's order, and has started no thread (numpy's
OpenBLAS would start its pool at import: the server sets OPENBLAS_NUM_THREADS=1, so numpy's own matrix
products run on one thread in these runs; torch's threads follow OMP_NUM_THREADS as usual); each run is
a fork of it that becomes `python train.py ARGS`: its own process, with the test's working folder,
environment, argv, sys.path[0], fresh `random` and numpy seeds, stdout and stderr in files (no TTY, as with
`capture_output`), the interpreter's normal exit (atexit handlers run) and its exit status. DDP ranks,
data-loader workers and torch.compile's compilers start from that process as they do from a user's.

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
import warnings
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "train.py"


# ------------------------------------------------------------------------------------------------ server
def _serve(requests: int, replies: int) -> int | None:
    """Answer run requests until the requests pipe closes; returns the exit status in a forked child (the
    run's), None in the server."""
    import random

    import numpy as np

    import noisylab.quiet  # noqa: F401  # what train.py's task function imports, in its order
    import noisylab.train  # noqa: F401

    if len(os.listdir("/proc/self/task")) != 1:  # forking a process with threads could copy a held lock
        os.write(replies, b'{"error": "the server started threads while importing; runs need fresh=True"}\n')
        return None
    os.write(replies, b'{"ready": true}\n')
    stream = os.fdopen(requests, "r")
    for line in stream:
        request = json.loads(line)
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:
            stream.close()
            os.close(replies)
            return _become_the_run(request, random, np)
        os.write(replies, (json.dumps({"pid": pid}) + "\n").encode())
        _, status = os.waitpid(pid, 0)
        os.write(replies, (json.dumps({"returncode": os.waitstatus_to_exitcode(status)}) + "\n").encode())
    return None


def _become_the_run(request: dict[str, Any], random: Any, np: Any) -> int:
    import runpy
    import traceback

    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    for fd, path in ((1, request["stdout"]), (2, request["stderr"])):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        os.dup2(target, fd)
        os.close(target)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)
    sys.argv = [str(TRAIN), *request["args"]]
    sys.path[0] = str(REPO)  # what `python train.py` puts first
    random.seed()
    np.random.seed()
    try:
        runpy.run_path(str(TRAIN), run_name="__main__")
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
        self.pending = b""
        reply = self._reply(timeout=600)
        if not reply.get("ready"):  # every run of this worker starts a fresh interpreter then
            self.available = False
            warnings.warn(f"forked train.py runs are off: {reply.get('error', reply)}", stacklevel=3)

    def _reply(self, timeout: float) -> dict[str, Any]:
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.replies], [], [], timeout)
            if not ready:
                raise TimeoutError
            chunk = os.read(self.replies, 65536)
            if not chunk:
                raise EOFError("the train.py server exited")
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)

    def run(self, args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess | None:
        """The finished run, or None when no server could start (run it fresh)."""
        if self.server is None or self.server.poll() is not None:
            self._start()
            if not self.available:
                return None
        command = [sys.executable, str(TRAIN), *args]
        with tempfile.TemporaryDirectory(prefix="noisylab-run-output-") as folder:
            out, err = Path(folder) / "stdout", Path(folder) / "stderr"
            request = {"args": args, "cwd": str(cwd), "env": dict(os.environ), "stdout": str(out), "stderr": str(err)}
            os.write(self.requests, (json.dumps(request) + "\n").encode())
            pid = self._reply(timeout=60)["pid"]
            try:
                returncode = self._reply(timeout=timeout)["returncode"]
            except TimeoutError:
                os.kill(pid, signal.SIGKILL)
                self._reply(timeout=60)
                raise subprocess.TimeoutExpired(command, timeout, out.read_text(), err.read_text()) from None
            return subprocess.CompletedProcess(command, returncode, out.read_text(errors="replace"),
                                               err.read_text(errors="replace"))


if __name__ == "__main__" and sys.argv[1:2] == ["--serve"]:
    sys.path[0] = str(REPO)
    exit_code = _serve(int(sys.argv[2]), int(sys.argv[3]))
    if exit_code is not None:
        sys.exit(exit_code)  # a forked run ends as an interpreter does: atexit handlers, flushed files
