"""What a signed membership report costs: signing, and verifying cold, warm and cached.

    .venv/bin/python bench/membership_notary.py [--count 2000] [--output membership_notary.json]

- sign: the observer signs one report (ECDSA P-256, SHA-256, its TLS key);
- verify cold: a node that has never seen the observer's certificate checks
  it (parse, issued by the cluster CA, validity, name) and the signature;
- verify warm: the certificate is cached (by fingerprint), the signature of
  a new report is checked;
- verify cached: the same report again (a gossip copy): one dictionary lookup;
- decode: a signed report piece from its wire dict (a new one, not shared);
- life statements (a member's own alive record, signed, its certificate named
  by fingerprint): signing one, verifying one whose certificate is known
  (a new record), a copy (cached by content), and the bytes of a record
  with and without its signature.

Certificates and keys are made in memory with clsd.certs (as clsd-certs
issues them). Results: bench/results/membership_notary.json with the machine.
"""

import argparse
import json
import os
import platform
import time

from clsd.certs.authority import create_authority, issue_node_certificate
from clsd.certs.identity import NodeIdentity
from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import MemberUpdate, Report, record_statement
from clsd.membership.core.notary import VerifiedCache, X509Notary


def identity(ca, name):
    pair = issue_node_certificate(ca, name)
    return NodeIdentity(name, pair.key, pair.certificate, (ca.certificate,))


def per_call(function, count):
    start = time.process_time()
    for index in range(count):
        function(index)
    return (time.process_time() - start) / count * 1e6


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--output", default="membership_notary.json")
    args = parser.parse_args()
    count = args.count
    ca = create_authority("bench CA")
    observer = X509Notary(identity(ca, "beta"))
    verifier_identity = identity(ca, "alpha")
    reports = [Report("alpha", 1, index, "beta").signed(observer) for index in range(count)]

    results = {
        "sign_us": per_call(
            lambda i: Report("alpha", 1, i, "beta").signed(observer), count),
        # A fresh cache per call: certificate and signature checked.
        "verify_cold_us": per_call(
            lambda i: reports[i].verified(X509Notary(verifier_identity, VerifiedCache())),
            count),
    }
    warm = X509Notary(verifier_identity)
    reports[0].verified(warm)
    results["verify_warm_us"] = per_call(lambda i: reports[i].verified(warm), count)
    results["verify_cached_us"] = per_call(lambda i: reports[i].verified(warm), count)
    wires = [r.to_wire() for r in reports]
    results["decode_us"] = per_call(lambda i: Report.from_wire(wires[i]), count)
    results["report_bytes"] = len(json.dumps(wires[0], separators=(",", ":")))
    results["unsigned_report_bytes"] = len(json.dumps(
        Report("alpha", 1, 0, "beta").to_wire(), separators=(",", ":")))
    # Life statements: alpha's alive records, incarnation i, as relays see them.
    member = X509Notary(identity(ca, "gamma"))
    records = [Member("gamma", "127.0.1.17:7400", 1733000000000000000, i, State.ALIVE)
               for i in range(count)]
    results["life_sign_us"] = per_call(
        lambda i: member.sign_life(record_statement(records[i])), count)
    lives = [MemberUpdate(r, life=member.sign_life(record_statement(r))) for r in records]
    relay = X509Notary(verifier_identity)
    relay.learn(member.certificate)  # asked for once (m.certs-want)

    def verify_life(i):
        update = lives[i]
        return relay.verify_life("gamma", record_statement(update.member), *update.life)

    results["life_verify_us"] = per_call(verify_life, count)
    results["life_verify_cached_us"] = per_call(verify_life, count)
    results["life_learn_certificate_us"] = per_call(
        lambda i: X509Notary(verifier_identity, VerifiedCache()).learn(member.certificate), 200)
    results["record_bytes"] = len(json.dumps(MemberUpdate(records[0]).to_wire(),
                                             separators=(",", ":")))
    results["signed_record_bytes"] = len(json.dumps(lives[0].to_wire(), separators=(",", ":")))
    document = {
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor(),
                    "python": platform.python_version(),
                    "load_average": os.getloadavg()},
        "count": count,
        "results": {k: round(v, 1) for k, v in results.items()},
    }
    print(f"{'step':<16} {'µs per call':>12}")
    for key, value in results.items():
        if key.endswith("_us"):
            print(f"{key[:-3]:<16} {value:>12.1f}")
    print(f"signed report: {results['report_bytes']} bytes on the wire "
          f"(unsigned: {results['unsigned_report_bytes']})")
    print(f"signed alive record: {results['signed_record_bytes']} bytes "
          f"(unsigned: {results['record_bytes']})")
    path = os.path.join(os.path.dirname(__file__), "results", args.output)
    with open(path, "w") as f:
        json.dump(document, f, indent=2)
        f.write("\n")
    print(f"written to {path}")


if __name__ == "__main__":
    main()
