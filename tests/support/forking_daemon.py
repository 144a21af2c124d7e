"""A classic double-forking daemon, for the ``type = "forking"`` tests.

``start PIDFILE``: the start command. It forks; the child calls setsid
and forks again; the grandchild (the main process) starts a worker, writes
PIDFILE and serves until SIGTERM (then it and its worker exit and the
pidfile is removed). The start command returns at once.

``stop PIDFILE MARKER``: a stop command: writes MARKER, sends SIGTERM to the
pid in PIDFILE and exits 0. ``fail``: a stop command that exits 1.
"""

import os
import signal
import sys
import time


def serve(pidfile):
    worker = os.fork()
    if worker == 0:
        signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
        while True:
            time.sleep(1)

    def terminate(*_):
        try:
            os.kill(worker, signal.SIGTERM)
            os.remove(pidfile)
        except OSError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, terminate)
    with open(pidfile + ".tmp", "w") as f:
        f.write(f"{os.getpid()}\n")
    os.rename(pidfile + ".tmp", pidfile)
    while True:
        time.sleep(1)


def start(pidfile):
    if os.fork() > 0:
        return  # the start command: done at once
    os.setsid()
    if os.fork() > 0:
        os._exit(0)
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    serve(pidfile)


def main(argv):
    if argv[0] == "start":
        start(argv[1])
    elif argv[0] == "stop":
        with open(argv[2], "w") as f:
            f.write("stopped by the stop command\n")
        with open(argv[1]) as f:
            os.kill(int(f.read()), signal.SIGTERM)
    elif argv[0] == "fail":
        sys.exit(1)


if __name__ == "__main__":
    main(sys.argv[1:])
