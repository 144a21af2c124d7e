"""``clsd-certs``: make a cluster CA, issue and revoke node certificates, show what a file holds.

Only argument handling and printing live here; the work is in
L{clsd.certs.store} (files) and L{clsd.certs.authority} (certificates).
"""

import argparse
import sys

from cryptography import x509

from clsd.certs import authority, store
from clsd.certs.authority import CertificateError


def _positive_days(text):
    try:
        days = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number of days, got {text!r}") from None
    if days < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {days}")
    return days


def _serial(text):
    try:
        value = int(text.replace(":", "").removeprefix("0x"), 16)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a certificate serial in hex (as clsd-certs show prints it), got {text!r}"
        ) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be a positive serial, got {text!r}")
    return value


def build_parser():
    parser = argparse.ArgumentParser(
        prog="clsd-certs",
        description="Certificates for a CLSD cluster: one CA per cluster, one "
                    "key and certificate per node (ECDSA P-256).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    init = commands.add_parser(
        "init", help="create the cluster CA (DIR/ca.pem, DIR/ca.key)",
        description="Create a cluster CA in DIR. Keep DIR/ca.key off the nodes.",
    )
    init.add_argument("dir", metavar="DIR")
    init.add_argument("--name", help="the CA's common name (default: CLSD cluster CA <random>)")
    init.add_argument("--days", type=_positive_days, default=authority.DEFAULT_CA_DAYS,
                      help=f"validity in days (default {authority.DEFAULT_CA_DAYS})")
    init.add_argument("--force", action="store_true",
                      help="replace an existing CA (every certificate it issued stops working)")

    issue = commands.add_parser(
        "issue", help="issue a node key and certificate (NODE.pem, NODE.key)",
        description="Issue a key and certificate for node NODE from the CA in DIR. "
                    "The node name goes into the subject and the subjectAltName.",
    )
    issue.add_argument("dir", metavar="DIR")
    issue.add_argument("node", metavar="NODE")
    issue.add_argument("--dns", action="append", default=[], metavar="NAME",
                       help="an extra DNS name for the subjectAltName (repeatable)")
    issue.add_argument("--ip", action="append", default=[], metavar="ADDR",
                       help="an IP address for the subjectAltName (repeatable)")
    issue.add_argument("--days", type=_positive_days, default=authority.DEFAULT_NODE_DAYS,
                       help=f"validity in days (default {authority.DEFAULT_NODE_DAYS})")
    issue.add_argument("--out", metavar="OUTDIR",
                       help="write NODE.pem and NODE.key here instead of DIR")
    issue.add_argument("--force", action="store_true", help="replace existing files")

    revoke = commands.add_parser(
        "revoke", help="revoke a node's certificates; write DIR/crl.pem",
        description="Add every certificate the CA in DIR issued to NODE (or only the one "
                    "with --serial) to the revocation record DIR/revoked.json, and write "
                    "a fresh revocation list DIR/crl.pem signed by the CA. Copy crl.pem "
                    "to every node ([tls] crl) and run reload there.",
    )
    revoke.add_argument("dir", metavar="DIR")
    revoke.add_argument("node", metavar="NODE")
    revoke.add_argument("--serial", type=_serial, metavar="HEX",
                        help="revoke only this certificate (its serial, as show prints it)")
    revoke.add_argument("--days", type=_positive_days, default=authority.DEFAULT_CRL_DAYS,
                        help="days until the list's next update; nodes refuse an expired "
                             f"list (default {authority.DEFAULT_CRL_DAYS})")

    crl = commands.add_parser(
        "crl", help="write a fresh DIR/crl.pem (push its next update further out)",
        description="Re-issue the revocation list DIR/crl.pem from DIR/revoked.json, "
                    "revoking nothing new; run it well before the list's next update.",
    )
    crl.add_argument("dir", metavar="DIR")
    crl.add_argument("--days", type=_positive_days, default=authority.DEFAULT_CRL_DAYS,
                     help=f"days until the next update (default {authority.DEFAULT_CRL_DAYS})")

    show = commands.add_parser(
        "show", help="print a certificate's subject, names, validity, fingerprint",
    )
    show.add_argument("file", metavar="FILE", help="a PEM certificate or private key")
    return parser


def _print_lines(lines, out):
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        out.write(f"{label + ':':<{width + 1}} {value}\n")


def _show(path, out):
    data = store.read_bytes(path, "file")
    if b"PRIVATE KEY-----" in data:
        key = store.load_private_key(path)
        _print_lines([
            ("file", path),
            ("kind", "private key"),
            ("key", authority.key_description(key.public_key())),
            ("public key", authority.public_key_fingerprint(key.public_key())),
            ("mode", f"{store.file_mode(path):04o}"),
        ], out)
        return
    if b"BEGIN X509 CRL-----" in data:
        _print_lines([("file", path)] + authority.describe_crl(store.load_crl(path)), out)
        return
    try:
        certificate = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise CertificateError(
            f"{path}: neither a PEM certificate, a private key nor a revocation list") from None
    lines = [("file", path)] + authority.describe_certificate(certificate)
    lines.append(("public key", authority.public_key_fingerprint(certificate.public_key())))
    _print_lines(lines, out)


def run(args, out):
    if args.command == "init":
        _, cert_path, key_path = store.init_authority(
            args.dir, name=args.name, days=args.days, force=args.force
        )
        out.write(f"created the cluster CA: {cert_path} and {key_path} (key mode 0600)\n"
                  f"copy {cert_path} to every node; keep {key_path} off the nodes.\n")
    elif args.command == "issue":
        _, cert_path, key_path = store.issue_node(
            args.dir, args.node, out=args.out, dns_names=args.dns,
            ip_addresses=args.ip, days=args.days, force=args.force,
        )
        out.write(f"issued {args.node}: {cert_path} and {key_path} (key mode 0600)\n")
    elif args.command == "revoke":
        added, revoked, path = store.revoke(args.dir, args.node, serial=args.serial,
                                            days=args.days)
        if added:
            serials = ", ".join(f"{entry.serial:x}" for entry in added)
            out.write(f"revoked {args.node}: serial {serials}\n")
        else:
            out.write(f"{args.node}: already revoked, nothing new\n")
        out.write(f"wrote {path} ({len(revoked)} revoked in all); copy it to every node "
                  "([tls] crl) and run reload there.\n")
    elif args.command == "crl":
        path = store.issue_crl(args.dir, days=args.days)
        out.write(f"wrote {path}; copy it to every node and run reload there.\n")
    elif args.command == "show":
        _show(args.file, out)


def main(argv=None, out=None, err=None):
    """Entry point of the ``clsd-certs`` console script; returns the exit status."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = build_parser().parse_args(argv)
    try:
        run(args, out)
    except CertificateError as e:
        err.write(f"clsd-certs: error: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
