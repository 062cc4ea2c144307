"""Record signatures: one Ed25519 signature per batch over a Merkle root (DESIGN §2.2, §2.3).

A record's ``chain`` starts with the ORIGIN signature of the node that made the body and grows by
one HOP signature per node that accepted and forwarded it. Every signature signs a leaf (see
:func:`leaf_for`) of a batch; the signer signs the batch's Merkle root once, and each record
carries its leaf's inclusion path. Verifying N records of one batch therefore costs N leaf
computations and about 2N hashes, plus a single Ed25519 verification.

A hop leaf includes the previous signature's bytes, so the chain is ordered: removing, reordering
or moving a link to another record breaks the leaf of the link after it.
"""

from __future__ import annotations

import hashlib
import threading
from collections import OrderedDict
from collections.abc import Collection, Sequence
from datetime import UTC, datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from node import merkle
from node.errors import ConfigError, SignatureError, UntrustedSignerError
from node.records import decode_body, pb
from node.truststore import TrustStore, identity_of, key_id_of

__all__ = ["LEAF_DOMAIN", "ROOT_DOMAIN", "Signer", "Verifier", "leaf_for", "root_statement"]

LEAF_DOMAIN = b"credit-node/record-signature/leaf/v1\x00"
ROOT_DOMAIN = b"credit-node/record-signature/batch-root/v1\x00"
_sha256 = hashlib.sha256
_PATH_TAG = b"\x52\x20"  # Signature.path (field 10, length-delimited), 32 bytes
# Leaves under one Ed25519 signature. Every record carries its path (34 bytes a level) at every
# node that stores it, and every verifier hashes it: 8,192 leaves make 13 levels, 256 make 8,
# ~170 bytes less per record and link. The price is one signature per 256 records (~30 µs here),
# and one verification per 256 at each receiver (~90 µs, DESIGN §2.3): under 0.4 µs a record.
MAX_BATCH_LEAVES = 256


def _affixes(kind: int, signer: str, signed_at_ms: int, rule_id: str, previous_signature: bytes) -> tuple[bytes, bytes]:
    """The bytes of a leaf before and after the body digest (a batch shares them; see leaf_for)."""
    if kind not in (pb.ORIGIN, pb.HOP):
        raise ValueError(f"signature kind {kind} is neither ORIGIN nor HOP")
    s, r = signer.encode(), rule_id.encode()
    post = b"".join((len(s).to_bytes(4, "big"), s, signed_at_ms.to_bytes(8, "big", signed=True),
                     len(r).to_bytes(4, "big"), r, len(previous_signature).to_bytes(4, "big"),
                     previous_signature))
    return LEAF_DOMAIN + bytes((kind,)), post


def leaf_for(kind: int, body_digest: bytes, signer: str, signed_at_ms: int, rule_id: str,
             previous_signature: bytes) -> bytes:
    """The leaf data one signature covers (the Merkle tree hashes it as ``H(0x00 || leaf)``)::

        "credit-node/record-signature/leaf/v1" 0x00 | kind (1 byte: 1 ORIGIN, 2 HOP)
        | body digest (32 bytes, SHA-256 of the body bytes)
        | u32 len | signer (UTF-8) | i64 signed_at_ms | u32 len | rule id (UTF-8)
        | u32 len | previous signature (the ``signature`` bytes of the link before; empty for ORIGIN)

    Big-endian integers; every variable field is length-prefixed, so distinct inputs never give
    the same bytes, and the domain string keeps a leaf from meaning anything in another protocol.
    """
    if len(body_digest) != merkle.DIGEST_SIZE:
        raise ValueError("body digest must be 32 bytes (SHA-256)")
    pre, post = _affixes(kind, signer, signed_at_ms, rule_id, previous_signature)
    return pre + body_digest + post


def root_statement(root: bytes) -> bytes:
    """What Ed25519 signs for a batch: a domain string and the Merkle root."""
    return ROOT_DOMAIN + root


class Signer:
    """Signs batches as one node with its Ed25519 key, certified by ``certificate_der``."""

    def __init__(self, node_id: str, private_key: Ed25519PrivateKey, certificate_der: bytes) -> None:
        try:
            cert = x509.load_der_x509_certificate(certificate_der)
            named = identity_of(cert).node_id
        except (ValueError, UntrustedSignerError) as exc:
            raise ConfigError(f"signing certificate is unusable: {exc}") from None
        if named != node_id:
            raise ConfigError(f"signing certificate names {named!r}, not this node {node_id!r}")
        if cert.public_key() != private_key.public_key():
            raise ConfigError("the signing key does not match the signing certificate")
        self.node_id = node_id
        self.key_id = key_id_of(certificate_der)
        self.certificate_der = certificate_der
        self._key = private_key

    def sign_origin(self, bodies: Sequence[bytes], *, now_ms: int) -> list[pb.Signature]:
        """ORIGIN signatures for serialised RecordBody ``bodies``, one per body, one Ed25519 op."""
        pre, post = _affixes(pb.ORIGIN, self.node_id, now_ms, "", b"")
        return self._sign([pre + _sha256(b).digest() + post for b in bodies], pb.ORIGIN, now_ms, None)

    def sign_origin_encoded(self, body_digests: Sequence[bytes], *, now_ms: int) -> list[bytes]:
        """:meth:`sign_origin` for bodies given by their SHA-256 digests, as serialised ``Signature``s.

        The import path's form: it has the digests already (they are stored), and it stores the
        signatures as bytes, so no message is built per record. Byte for byte what serialising
        :meth:`sign_origin`'s messages gives (Ed25519 is deterministic; tests/test_signing.py).
        """
        pre, post = _affixes(pb.ORIGIN, self.node_id, now_ms, "", b"")
        indexes = [pb.Signature(leaf_index=i).SerializeToString() if i else b""
                   for i in range(min(len(body_digests), MAX_BATCH_LEAVES))]
        out: list[bytes] = []
        for start in range(0, len(body_digests), MAX_BATCH_LEAVES):
            part = body_digests[start:start + MAX_BATCH_LEAVES]
            root, paths = merkle.tree_paths([pre + d + post for d in part])
            head = pb.Signature(kind=pb.ORIGIN, signer=self.node_id, key_id=self.key_id, signed_at_ms=now_ms,
                                batch_root=root, signature=self._key.sign(root_statement(root))).SerializeToString()
            # Fields 8 (leaf_index, absent when 0), 9 (leaf_count), then 10 (path) once per digest.
            count = pb.Signature(leaf_count=len(part)).SerializeToString()
            for i, path in enumerate(paths):
                out.append(b"".join((head, indexes[i], count, _PATH_TAG, _PATH_TAG.join(path))) if path
                           else head + indexes[i] + count)
        return out

    def sign_hops(self, records: Sequence[pb.SignedRecord], rule_ids: Sequence[str], *,
                  now_ms: int) -> list[pb.Signature]:
        """HOP signatures, one per record, to append to its chain (the records are not changed).

        ``rule_ids[i]`` is the routing rule that sends ``records[i]`` on. Sign only records the
        :class:`Verifier` accepted: a hop vouches for the chain it extends.
        """
        if len(records) != len(rule_ids):
            raise ValueError(f"{len(records)} records but {len(rule_ids)} rule ids")
        leaves = []
        affixes: dict[tuple[str, bytes], tuple[bytes, bytes]] = {}  # records of one batch share them
        for rec, rule_id in zip(records, rule_ids, strict=True):
            chain = rec.chain
            if not chain:
                raise SignatureError("a record without an origin signature cannot be forwarded",
                                     code="E_CHAIN_EMPTY")
            shared = (rule_id, chain[-1].signature)
            pre_post = affixes.get(shared)
            if pre_post is None:
                pre_post = affixes[shared] = _affixes(pb.HOP, self.node_id, now_ms, *shared)
            leaves.append(pre_post[0] + _sha256(rec.body).digest() + pre_post[1])
        return self._sign(leaves, pb.HOP, now_ms, rule_ids)

    def _sign(self, leaves: list[bytes], kind: pb.SignatureKind, now_ms: int,
              rule_ids: Sequence[str] | None) -> list[pb.Signature]:
        out = []
        for start in range(0, len(leaves), MAX_BATCH_LEAVES):
            part = leaves[start:start + MAX_BATCH_LEAVES]
            root, paths = merkle.tree_paths(part)
            template = pb.Signature(kind=kind, signer=self.node_id, key_id=self.key_id, signed_at_ms=now_ms,
                                    batch_root=root, signature=self._key.sign(root_statement(root)),
                                    leaf_count=len(part))
            for i, path in enumerate(paths):
                sig = pb.Signature()
                sig.CopyFrom(template)  # faster than building each from keywords
                sig.leaf_index = i
                sig.path.extend(path)
                if rule_ids is not None:
                    sig.rule_id = rule_ids[start + i]
                out.append(sig)
        return out


# One batch signature: (key id, signer, signed at, root, leaf count, Ed25519 signature).
_BatchKey = tuple[bytes, str, int, bytes, int, bytes]
# The links found under it in one verify() call: (leaf index, leaf, path) and (record, chain position).
_Batch = tuple[list[tuple[int, bytes, Sequence[bytes]]], list[tuple[int, int]]]


class Verifier:
    """Verifies whole chains, batch-aware, against a :class:`TrustStore`. Thread-safe.

    ``signer_roles`` are the certificate roles allowed to sign records (federation nodes only by
    default: a person's or an agency's certificate must never vouch for a record). Ed25519
    results are remembered for ``cache_size`` (key id, root, signature) triples, so a batch split
    over several calls is still verified once; trust (validity, revocation) is checked every call.
    """

    def __init__(self, trust: TrustStore, *, signer_roles: Collection[str] = ("node",),
                 cache_size: int = 65536) -> None:
        self._trust = trust
        self._roles = frozenset(signer_roles)
        self._cache_size = cache_size
        self._verified: OrderedDict[tuple[bytes, bytes, bytes], None] = OrderedDict()
        self._lock = threading.Lock()

    def verify(self, records: Sequence[pb.SignedRecord], *,
               decoded: Sequence[tuple[str, bytes]] | None = None) -> list[SignatureError | None]:
        """One result per record: None if every signature of its chain holds, else the first error.

        ``decoded`` is each record's (body's origin node, body digest) when the caller has decoded
        and hashed the bodies already (the inbox does, for what it stores): not done twice.
        """
        first: dict[int, tuple[int, SignatureError]] = {}  # record -> (chain position, error)

        def fail(ri: int, pos: int, err: SignatureError) -> None:
            if ri not in first or pos < first[ri][0]:
                first[ri] = (pos, err)

        batches: dict[_BatchKey, _Batch] = {}
        affixes: dict[tuple[int, str, int, str, bytes], tuple[bytes, bytes]] = {}
        for ri, rec in enumerate(records):
            for pos, err in self._collect(ri, rec, batches, affixes, None if decoded is None else decoded[ri]):
                fail(ri, pos, err)
        for (key_id, signer, signed_at_ms, root, count, signature), (items, where) in batches.items():
            ok = merkle.verify_many(root, count, items)
            bad = [(ri, pos) for (ri, pos), good in zip(where, ok, strict=True) if not good]
            for ri, pos in bad:
                fail(ri, pos, _path_error(records[ri], pos, signer))
            if len(bad) == len(where):
                continue
            refused = self._check_batch(key_id, signer, signed_at_ms, root, signature)
            if refused is not None:
                for ri, pos in where:
                    fail(ri, pos, _at(refused, pos))
        return [first[i][1] if i in first else None for i in range(len(records))]

    def _collect(self, ri: int, rec: pb.SignedRecord, batches: dict[_BatchKey, _Batch],
                 affixes: dict[tuple[int, str, int, str, bytes], tuple[bytes, bytes]],
                 decoded: tuple[str, bytes] | None) -> list[tuple[int, SignatureError]]:
        """Check a chain's shape and file each link under its batch; returns shape errors.

        Hot path (once per link of every record received): protobuf attribute reads are slow, so
        each is read once, and a batch's shared leaf affixes are built once (``affixes``).
        """
        chain = rec.chain
        if not chain:
            return [(0, SignatureError("the record carries no signature", code="E_CHAIN_EMPTY"))]
        if decoded is None:
            body = rec.body
            try:
                origin = decode_body(body).origin_node
            except SignatureError as exc:
                return [(0, exc)]
            digest = _sha256(body).digest()
        else:
            origin, digest = decoded
        previous = b""
        for pos, sig in enumerate(chain):
            kind, signer = sig.kind, sig.signer
            if kind != (pb.ORIGIN if pos == 0 else pb.HOP):
                want = "ORIGIN" if pos == 0 else "HOP"
                return [(pos, SignatureError(f"chain[{pos}] must be the {want} signature", code="E_CHAIN_ORDER"))]
            if pos == 0 and signer != origin:
                return [(pos, SignatureError(f"origin signed by {signer!r} but the body names {origin!r}",
                                             code="E_SIGNER_MISMATCH"))]
            signed_at, signature = sig.signed_at_ms, sig.signature
            shared = (kind, signer, signed_at, sig.rule_id, previous)
            pre_post = affixes.get(shared)
            if pre_post is None:
                pre_post = affixes[shared] = _affixes(*shared)
            key = (sig.key_id, signer, signed_at, sig.batch_root, sig.leaf_count, signature)
            batch = batches.get(key)
            if batch is None:
                batch = batches[key] = ([], [])
            # path[:] copies to a list in C; iterating the container from Python is 4x slower.
            batch[0].append((sig.leaf_index, pre_post[0] + digest + pre_post[1], sig.path[:]))
            batch[1].append((ri, pos))
            previous = signature
        return []

    def _check_batch(self, key_id: bytes, signer: str, signed_at_ms: int, root: bytes,
                     signature: bytes) -> SignatureError | None:
        """Signer trusted at signing time, named as in the certificate, and Ed25519 over the root."""
        cert = self._trust.get(key_id)
        if cert is None:
            return SignatureError(f"no certificate known for key id {key_id.hex()[:16]}… of {signer}",
                                  code="E_SIGNER_UNKNOWN")
        try:
            at = datetime.fromtimestamp(signed_at_ms / 1000, UTC)
        except (OverflowError, ValueError, OSError):
            return UntrustedSignerError(f"signing time {signed_at_ms} is out of range")
        try:
            who = self._trust.check(cert, at)
        except UntrustedSignerError as exc:
            return exc
        if who.role not in self._roles:
            return UntrustedSignerError(f"{who.node_id} has role {who.role!r}, which may not sign records")
        if who.node_id != signer:
            return SignatureError(f"signature claims signer {signer!r} but its certificate is {who.node_id!r}",
                                  code="E_SIGNER_MISMATCH")
        public_key = cert.public_key()
        if not isinstance(public_key, Ed25519PublicKey):
            return UntrustedSignerError(f"the certificate of {signer} is not an Ed25519 signing certificate")
        triple = (key_id, root, signature)
        with self._lock:
            if triple in self._verified:
                self._verified.move_to_end(triple)
                return None
        try:
            public_key.verify(signature, root_statement(root))
        except InvalidSignature:
            return SignatureError(f"the batch signature of {signer} does not verify", code="E_SIGNATURE_INVALID")
        with self._lock:
            self._verified[triple] = None
            if len(self._verified) > self._cache_size:
                self._verified.popitem(last=False)
        return None


def _at(err: SignatureError, pos: int) -> SignatureError:
    """The same error, saying which link of the chain it concerns."""
    return type(err)(f"chain[{pos}]: {err.message}", field=err.field, code=err.code)


_MAX_DIAGNOSED_CHAIN = 16  # a federation has four levels; longer chains are not worth the hashing


def _path_error(rec: pb.SignedRecord, pos: int, signer: str) -> SignatureError:
    """E_MERKLE_PATH, or E_CHAIN_ORDER when the hop was in fact signed after another link.

    Runs only for links that failed. A hop's leaf includes the previous link's signature, so if it
    verifies over some other link's signature, the chain was reordered (or a link removed).
    """
    chain = rec.chain
    if pos > 0 and len(chain) <= _MAX_DIAGNOSED_CHAIN:
        sig = chain[pos]
        digest = _sha256(rec.body).digest()
        for q, other in enumerate(chain):
            if q in (pos - 1, pos):
                continue
            leaf = leaf_for(pb.HOP, digest, sig.signer, sig.signed_at_ms, sig.rule_id, other.signature)
            try:
                if merkle.root_from_path(leaf, sig.leaf_index, sig.leaf_count, sig.path) == sig.batch_root:
                    return SignatureError(f"chain[{pos}] by {signer} was signed after chain[{q}], not "
                                          f"chain[{pos - 1}]: links reordered or removed", code="E_CHAIN_ORDER")
            except ValueError:
                break  # the path itself is malformed: no order can fix that
    return SignatureError(f"chain[{pos}] by {signer}: the inclusion path does not lead to the signed batch "
                          "root (body, signature fields or path altered)", code="E_MERKLE_PATH")
