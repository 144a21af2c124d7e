"""Run one admin command over SSH with the in-process conch client, as ``ssh HOST CMD`` would.

``python -m rig.admin_exec 127.0.0.11:7422 KEYFILE status``

For demos and rigs on machines without an OpenSSH client: it prints the
command's stdout and stderr and exits with its status (255 when the
connection or login failed, as ssh(1) does). Loopback only: like the client
it uses, it accepts any host key.
"""

import argparse
import sys

from twisted.conch.ssh import keys
from twisted.internet import defer, task

from rig.admin_client import connect
from rig.faults.topology import check_loopback

#: ssh(1)'s status when it could not run the command at all.
EXIT_CONNECT_FAILED = 255


def parse_address(text):
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise argparse.ArgumentTypeError(f"must be HOST:PORT, got {text!r}")
    try:
        check_loopback(host)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return host, int(port)


async def _run(reactor, address, key, command, out, err):
    try:
        conn = await connect(reactor, address, key=key)
    except Exception as e:
        err.write(f"admin_exec: cannot log in at {address[0]}:{address[1]}: {e}\n")
        return EXIT_CONNECT_FAILED
    try:
        result = await conn.run(command)
    finally:
        conn.close()
    out.write(result.stdout.decode("utf-8", "replace"))
    err.write(result.stderr.decode("utf-8", "replace"))
    return EXIT_CONNECT_FAILED if result.status is None else result.status


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m rig.admin_exec",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("address", type=parse_address, help="the admin SSH listener, HOST:PORT")
    parser.add_argument("key", help="an OpenSSH private key file")
    parser.add_argument("command", nargs="+", help="the admin command and its arguments")
    args = parser.parse_args(argv)
    with open(args.key, "rb") as f:
        key = keys.Key.fromString(f.read())
    status = []

    def run(reactor):
        d = defer.ensureDeferred(_run(reactor, args.address, key, " ".join(args.command),
                                      sys.stdout, sys.stderr))
        return d.addCallback(status.append)

    try:
        task.react(run)
    except SystemExit:
        pass
    sys.stdout.flush()
    sys.exit(status[0] if status else EXIT_CONNECT_FAILED)


if __name__ == "__main__":
    main()
