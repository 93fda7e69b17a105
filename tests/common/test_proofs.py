"""Proofs of origin (`swarm_common.proofs`) and how they travel beside an envelope."""

from __future__ import annotations

import uuid

from swarm_common import proofs
from swarm_common.messages import TaskFailed, TaskMessage
from swarm_common.streams import ENVELOPE_FIELD, PROOF_FIELD, decode, encode, prove


def _event() -> TaskFailed:
    return TaskFailed(
        session_id=uuid.uuid4(), task_id=uuid.uuid4(), attempt=1, worker="w", reason="crash"
    )


def test_a_proof_holds_for_its_envelope_and_key_only() -> None:
    key, other = proofs.new_key(), proofs.new_key()
    assert key != other and len(key) == 2 * proofs.KEY_BYTES
    fields = prove(encode(_event(), envelope_id="env-1"), key)
    envelope = decode(fields)
    assert envelope.raw == fields[ENVELOPE_FIELD]
    assert envelope.proof == fields[PROOF_FIELD].decode()
    assert proofs.verify(key, envelope.raw, envelope.proof)
    assert not proofs.verify(other, envelope.raw, envelope.proof)
    changed = envelope.raw.replace(b'"attempt":1', b'"attempt":2')
    assert changed != envelope.raw and not proofs.verify(key, changed, envelope.proof)
    for bad_key, proof in [(None, envelope.proof), ("", envelope.proof), ("not hex", "x")]:
        assert not proofs.verify(bad_key, envelope.raw, proof)
    for proof in [None, "", envelope.proof.upper(), envelope.proof + "0", "é" * 64]:
        assert not proofs.verify(key, envelope.raw, proof)


def test_an_event_sent_again_carries_the_same_proof() -> None:
    key = proofs.new_key()
    fields = encode(_event())
    assert prove(fields, key) == prove(dict(fields), key)


def test_the_key_shows_in_no_repr() -> None:
    key = proofs.new_key()
    message = TaskMessage(
        session_id=uuid.uuid4(),
        task_id=uuid.uuid4(),
        task_key="t",
        attempt=1,
        agent="shell",
        title="t",
        prompt="true",
        repo="repos/x.git",
        base_commit="a" * 40,
        branch="b",
        timeout_s=10,
        event_key=key,
    )
    assert key not in repr(message) and key not in str(message)
    assert decode(encode(message)).message == message  # it travels, though
    envelope = decode(prove(encode(_event()), key))
    assert envelope.proof is not None and envelope.proof not in repr(envelope)
