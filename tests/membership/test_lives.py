"""A member's own record (its life statement) is believed only with its signature.

doc/membership.md, "What each message may claim": an alive record carries its
member's signature over every field, the certificate named by fingerprint and
asked for once (m.certs-want / m.certs); a relayed alive record that is not
signed by its member is not believed, one whose signature does not match is
forged; suspicion, death or removal cannot invent a life or bring a dead
member back. Verified statements are cached by content: copies cost no check.
"""

import random

import attrs
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.trial import unittest

from clsd.config.membership import MembershipConfig
from clsd.membership.core.members import Member, State
from clsd.membership.core.messages import (
    Certs, CertsWant, Gossip, Join, MemberUpdate, SyncRecords, from_wire, record_statement,
)
from clsd.membership.core.notary import FakeNotary, VerifiedCache
from clsd.membership.core.table import build_snapshots
from rig.sim.cluster import signed_lives
from clsd.wire.core.errors import Forged
from tests.support.membership_signing import own_proof, signed_update
from clsd.membership.core.node import Core, JoinRequested, LinkUp, Send

NAMES = [f"n{i}" for i in range(12)]


def members(generation=1):
    return [Member(n, f"127.0.0.{i + 2}:7400", generation, 0, State.ALIVE)
            for i, n in enumerate(NAMES)]


def formed(me="n0", notary=None):
    listed = members()
    snapshot, rings = build_snapshots(listed, 8)
    address = next(m.address for m in listed if m.name == me)
    core = Core(me, address, 1, MembershipConfig(), rng=random.Random(2), snapshot=snapshot,
                ring_snapshot=rings, notary=notary, lives=signed_lives(listed))
    core.handle(JoinRequested(), 0.0)
    return core


def signed_by(member, signer, cache=None):
    """An alive record of C{member} signed by C{signer} (its own name: a good one)."""
    notary = FakeNotary(signer, cache)
    return MemberUpdate(member, life=notary.sign_life(record_statement(member)))


def declare_dead(core, name, now=0.5):
    """As the detection rule would (its own tests are elsewhere)."""
    core._begin(now)
    core._accept(core.member(name).evolve(state=State.DEAD), "dead (test)")
    core._finish()


def sends(actions, kind):
    return [a for a in actions if type(a) is Send and type(a.message) is kind]


class Rules(unittest.TestCase):
    def setUp(self):
        self.core = formed()
        self.n7 = self.core.member("n7")

    def test_a_higher_incarnation_without_signature_does_not_mask_a_death(self):
        declare_dead(self.core, "n7")
        for update in (MemberUpdate(self.n7.evolve(incarnation=3)),
                       signed_by(self.n7.evolve(incarnation=3), "n3")):
            try:
                self.core.receive("n3", Gossip((update,)), 1.0)
            except Forged:
                pass
            self.assertIs(self.core.member("n7").state, State.DEAD, update)
        # its own signature of a newer incarnation is a refutation (it lives)
        self.core.receive("n3", Gossip((signed_update(self.n7.evolve(incarnation=3)),)), 1.1)
        self.assertIs(self.core.member("n7").state, State.ALIVE)
        self.assertEqual(self.core.member("n7").incarnation, 3)

    def test_an_invented_life_at_another_address_is_not_believed(self):
        phantom = Member("n7", "127.9.9.9:7400", 99, 0, State.ALIVE)
        self.core.receive("n3", Gossip((MemberUpdate(phantom),)), 1.0)
        with self.assertRaises(Forged):
            self.core.receive("n3", Gossip((signed_by(phantom, "n3"),)), 1.0)
        self.assertEqual(self.core.member("n7"), self.n7)
        self.assertEqual(self.core.refused["life-unproven"], 1)
        self.assertEqual(self.core.refused["life-proof"], 1)

    def test_a_signature_of_other_content_is_forged(self):
        good = signed_update(self.n7.evolve(incarnation=1))
        altered = attrs.evolve(good, member=good.member.evolve(address="127.9.9.9:7400"))
        with self.assertRaises(Forged) as caught:
            self.core.receive("n3", SyncRecords((altered,)), 1.0)
        self.assertEqual(caught.exception.claimed, "n7")
        self.assertEqual(self.core.member("n7"), self.n7)

    def test_a_suspicion_or_death_cannot_invent_a_life(self):
        for state in (State.SUSPECT, State.DEAD):
            phantom = Member("n7", "127.9.9.9:7400", 99, 0, state)
            self.core.receive("n3", Gossip((MemberUpdate(phantom, 0.0, ("n3",)),)), 1.0)
            unknown = Member("stranger", "127.9.9.8:7400", 1, 0, state)
            self.core.receive("n3", SyncRecords((MemberUpdate(unknown, 0.0, ("n3",)),)), 1.0)
        self.assertEqual(self.core.member("n7"), self.n7)
        self.assertIsNone(self.core.member("stranger"))
        self.assertEqual(self.core.refused["life-unproven"], 4)

    def test_a_suspicion_or_death_cannot_alter_a_life(self):
        for state in (State.SUSPECT, State.DEAD):
            for change in (dict(address="127.9.9.9:7400"), dict(meta='{"owner":true}')):
                altered = self.n7.evolve(state=state, incarnation=1, **change)
                self.core.receive("n3", Gossip((MemberUpdate(altered, 0.0, ("n3",)),)), 1.0)
                self.assertEqual(self.core.member("n7"), self.n7)
        self.assertEqual(self.core.refused["life-unproven"], 4)
        # the same life, as it reads here: a suspicion as before
        self.core.receive("n3", Gossip((MemberUpdate(self.n7.evolve(
            state=State.SUSPECT, incarnation=1)),)), 1.1)
        self.assertIs(self.core.member("n7").state, State.SUSPECT)

    def test_a_suspicion_cannot_bring_a_dead_member_back(self):
        declare_dead(self.core, "n7")
        self.core.receive("n3", Gossip((MemberUpdate(self.n7.evolve(
            state=State.SUSPECT, incarnation=1)),)), 1.0)
        self.assertIs(self.core.member("n7").state, State.DEAD)
        self.assertNotIn("n7", self.core._table.rings)

    def test_own_record_is_signed_and_relayed_with_its_signature(self):
        self.core.set_meta({"x": 1}, 1.0)
        queued = self.core._queue.get(("m", "n0"))
        self.assertEqual(queued, signed_update(self.core.me))
        other = formed("n1")
        other.receive("n0", from_wire(Gossip((queued,)).to_wire()), 1.0)
        self.assertEqual(other.member("n0").meta, '{"x":1}')
        # relayed onwards by n1 with n0's signature
        self.assertEqual(other._queue.get(("m", "n0")).life, queued.life)

    def test_a_join_proves_its_record_by_its_signature_and_certificate(self):
        joiner = Member("new", "127.0.1.1:7400", 4, 0, State.ALIVE)
        self.core.receive("new", Join(joiner), 1.0)
        self.assertIsNone(self.core.member("new"), "a join without its proof")
        self.core.receive("new", Join(joiner, own_proof(joiner)), 1.1)
        self.assertEqual(self.core.member("new"), joiner)
        self.assertEqual(self.core._sync_update(joiner), signed_update(joiner))

    def test_copies_are_not_verified_again(self):
        update = signed_update(self.n7.evolve(incarnation=1))
        cache = self.core.notary.cache
        self.core.receive("n3", Gossip((update,)), 1.0)
        checked = cache.counts["signatures"]
        for at in range(5):
            self.core.receive(f"n{at + 1}", Gossip((update,)), 2.0 + at)
            self.core.receive("n2", SyncRecords((update,)), 2.5 + at)
        self.assertEqual(cache.counts["signatures"], checked)


class CertificateExchange(unittest.TestCase):
    """Nodes with caches of their own: a record's certificate is asked for once."""

    def setUp(self):
        self.core = formed(notary=FakeNotary("n0", VerifiedCache()))
        self.n7 = self.core.member("n7")

    def test_an_unknown_certificate_is_asked_for_and_the_record_believed_with_it(self):
        notary = FakeNotary("n7", VerifiedCache())
        news = self.n7.evolve(incarnation=2)
        update = MemberUpdate(news, life=notary.sign_life(record_statement(news)))
        actions = self.core.receive("n3", Gossip((update,)), 1.0)
        self.assertEqual(self.core.member("n7"), self.n7, "believed before its proof")
        [ask] = sends(actions, CertsWant)
        self.assertEqual((ask.to, ask.message.fingerprints), ("n3", (notary.fingerprint,)))
        # a copy from elsewhere soon after is not asked for again
        self.assertFalse(sends(self.core.receive("n4", Gossip((update,)), 1.5), CertsWant))
        # n3 answers from what it verified
        relay = formed("n3", notary=FakeNotary("n3", VerifiedCache()))
        relay.notary.learn(notary.certificate)
        [answer] = sends(relay.receive("n0", ask.message, 1.6), Certs)
        self.core.receive("n3", from_wire(answer.message.to_wire()), 1.7)
        self.assertEqual(self.core.member("n7"), news)

    def test_a_joiner_asks_its_seed_for_the_certificates_of_the_pushed_list(self):
        seed = formed("n0")
        joiner = Core("new", "127.0.1.1:7400", 4, MembershipConfig(), rng=random.Random(3),
                      notary=FakeNotary("new", VerifiedCache()))
        seed_address = seed.me.address
        joiner.handle(JoinRequested((seed_address,)), 0.0)
        [join] = sends(joiner.handle(LinkUp("n0", seed_address), 0.1), Join)
        answers = [a.message for a in seed.receive("new", join.message, 0.2) if type(a) is Send]
        asks = []
        for message in answers:
            asks += sends(joiner.receive("n0", from_wire(message.to_wire()), 0.3), CertsWant)
        self.assertEqual(len(joiner), 2, "only the seed (proved by its join answer) and itself")
        self.assertEqual(len(asks), 1)
        self.assertEqual(len(asks[0].message.fingerprints), len(NAMES) - 1)
        [certs] = sends(seed.receive("new", asks[0].message, 0.4), Certs)
        after = joiner.receive("n0", from_wire(certs.message.to_wire()), 0.5)
        self.assertEqual(len(joiner), len(NAMES) + 1)
        self.assertEqual(joiner.member("n7"), seed.member("n7"))
        self.assertTrue(any(type(a) is Send and a.message.TYPE == "m.sync-digest"
                            for a in after), "the list is in: the joiner compares lists")

    def test_certificates_not_asked_for_are_ignored(self):
        certificate = FakeNotary("n9", VerifiedCache()).certificate
        self.core.receive("n3", Certs((certificate,)), 1.0)
        self.assertIsNone(self.core.notary.certificate_by(
            FakeNotary("n9", VerifiedCache()).fingerprint))

    def test_a_certificate_naming_another_node_does_not_prove_a_record(self):
        mallory = FakeNotary("n3", VerifiedCache())
        self.core.notary.learn(mallory.certificate)
        news = self.n7.evolve(incarnation=2)
        update = MemberUpdate(news, life=(mallory.sign(record_statement(news))[0],
                                          mallory.fingerprint))
        with self.assertRaises(Forged):
            self.core.receive("n3", Gossip((update,)), 1.0)
        self.assertEqual(self.core.member("n7"), self.n7)


fields = st.sampled_from(["address", "generation", "incarnation", "meta", "signer"])


class Property(unittest.TestCase):
    @settings(max_examples=150, deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture])
    @given(st.sampled_from(NAMES[1:]), st.sampled_from(NAMES[1:]), fields,
           st.integers(1, 1000), st.booleans())
    def test_a_relayed_alive_record_not_signed_as_it_reads_is_not_believed(
            self, subject, relay, field, bump, by_list):
        core = formed()
        before = {m.name: m for m in core._table}
        genuine = core.member(subject).evolve(incarnation=bump)
        signer = subject
        if field == "signer":
            signer = relay if relay != subject else "n0"
            update = signed_by(genuine, signer)
        else:
            update = signed_update(genuine)
            changed = {"address": dict(address="127.9.9.9:7400"),
                       "generation": dict(generation=genuine.generation + bump),
                       "incarnation": dict(incarnation=bump + 1),
                       "meta": dict(meta='{"owner":true}')}[field]
            update = attrs.evolve(update, member=genuine.evolve(**changed))
        message = SyncRecords((update,)) if by_list else Gossip((update,))
        try:
            core.receive(relay, message, 1.0)
        except Forged:
            pass
        self.assertEqual({m.name: m for m in core._table}, before)
        self.assertIsNone(core._queue.get(("m", subject)))


class Sizes(unittest.TestCase):
    def test_the_largest_messages_of_signed_records_and_certificates(self):
        import json

        from clsd.membership.core.messages import MAX_CERTIFICATES, MAX_SYNC_RECORDS
        from clsd.membership.core.notary import FINGERPRINT_LENGTH, MAX_CERTIFICATE, MAX_SIGNATURE
        from clsd.wire.core.codec import MAX_LINE
        worst = Member("n" * 63, "a" * 255, 2**64 - 1, 2**64 - 1, State.ALIVE)
        update = MemberUpdate(worst, life=("s" * MAX_SIGNATURE, "f" * FINGERPRINT_LENGTH))
        records = SyncRecords((update,) * MAX_SYNC_RECORDS, tuple(range(64)), True, 1 << 16)
        certs = Certs(("c" * MAX_CERTIFICATE,) * MAX_CERTIFICATES)
        want = CertsWant(("f" * FINGERPRINT_LENGTH,) * MAX_CERTIFICATES)
        self.assertLess(len(json.dumps(records.to_wire())), 80 * 1024)
        for message in (records, certs, want):
            self.assertLess(len(json.dumps(message.to_wire())), MAX_LINE)
            self.assertEqual(from_wire(json.loads(json.dumps(message.to_wire()))), message)
