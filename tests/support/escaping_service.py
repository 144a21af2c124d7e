"""A service that escapes its process group, as real daemons do ("daemon mode").

``python escaping_service.py escape CMD...``: the leader double-forks; the
grandchild calls ``setsid`` (a new session and process group) and executes
CMD; the leader stays in the foreground until it is signalled (so the
supervisor believes its service is this one process).

``python escaping_service.py hold HOST PORT PIDFILE``: listen on HOST:PORT,
then write the own pid to PIDFILE (atomically): the pid in the file is a
process that holds the port. Then sleep until killed.
"""

import os
import signal
import socket
import sys
import time


def escape(argv):
    middle = os.fork()
    if middle == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp(argv[0], argv)
        os._exit(0)
    os.waitpid(middle, 0)
    while True:
        signal.pause()


def hold(host, port, pidfile):
    listener = socket.socket()
    try:
        listener.bind((host, int(port)))
    except OSError as e:
        sys.stderr.write(f"escaping_service: cannot hold {host}:{port}: {e}\n")
        return 3
    listener.listen(8)
    temporary = f"{pidfile}.{os.getpid()}"
    with open(temporary, "w") as f:
        f.write(str(os.getpid()))
    os.replace(temporary, pidfile)
    while True:
        time.sleep(3600)


def main(argv):
    if argv[:1] == ["escape"] and len(argv) > 1:
        return escape(argv[1:])
    if argv[:1] == ["hold"] and len(argv) == 4:
        return hold(*argv[1:])
    sys.stderr.write(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
