"""Reference answers to the exercises of the numbered notebooks in notebooks/: INSTRUCTOR ONLY.

The student copies in notebooks/ hold only a test and a hint per exercise. tests/test_notebooks.py puts each
answer below in front of its check("N", answer_N) line and runs the notebook: every check must print
"correct". ``python -m securechat.labs release`` never copies this file.
"""

ANSWERS = {
    '00_tour': {
        '1': "answer_1 = (sum(1 for r in sim.trace if r.source == \"alice\"))",
        '2': "answer_2 = ({\"client_hello\", \"server_hello\", \"record\"})",
        '3': "answer_3 = lambda trace, a, b: sum(r.size for r in trace if (r.source, r.target) == (a, b))",
        '4': "answer_4 = (4)",
    },
    '01_keys': {
        '1': "answer_1 = (pow(65537, -1, (_ex_p - 1) * (_ex_q - 1)))",
        '2': "answer_2 = (key_fingerprint(dsa_key))",
        '3': "answer_3 = (pow(G, 12345, P))",
        '4': "answer_4 = (\"q\")",
    },
    '02_signatures_rsa_vs_dsa': {
        '1': "answer_1 = (min((\"sign\", \"verify\"), key=lambda op: statistics.median(results[\"RSA-PSS 2048\"][op])))",
        '2': "answer_2 = (2 * 256 // 8)",
        '3': "def _reference_recover(q, r, s1, h1, s2, h2):\n    k = (h1 - h2) * pow(s1 - s2, -1, q) % q\n    return (s1 * k - h1) * pow(r, -1, q) % q\nanswer_3 = _reference_recover",
        '4': "answer_4 = (_ratio())",
    },
    '03_channel': {
        '1': "answer_1 = (bytes(4) + (5).to_bytes(8, \"big\"))",
        '2': "answer_2 = (100 + 16)",
        '3': "answer_3 = (C2S_INFO)",
        '4': "answer_4 = (max(_sizes, key=_sizes.get))",
    },
    '04_register_login': {
        '1': "answer_1 = (32)",
        '2': "answer_2 = (16)",
        '3': "import hashlib as _hashlib, base64 as _b64\ndef _ref_verify(password, record):\n    _, n, r, p, salt, digest = record.split(\"$\")\n    got = _hashlib.scrypt(unicodedata.normalize(\"NFC\", password).encode(), salt=_b64.b64decode(salt), n=int(n),\n                          r=int(r), p=int(p), dklen=32)\n    return got == _b64.b64decode(digest)\nanswer_3 = _ref_verify",
        '4': "answer_4 = (sim.config.failures_before_backoff)",
    },
    '05_chat_keys_and_messages': {
        '1': "answer_1 = (len(distribution.members))",
        '2': "answer_2 = (len(distribution.wrapped_key))",
        '3': "def _ref_decrypt(chat_key, m):\n    h = chat_header(chat_id=m.chat_id, epoch=m.epoch, sender=m.sender, seq=m.seq, suite=\"aes-256-gcm\")\n    k = sender_key(chat_key, chat_id=m.chat_id, epoch=m.epoch, sender=m.sender)\n    return unseal(k, m.ciphertext, aad=h, nonce=nonce_from_counter(m.seq)).decode()\nanswer_3 = _ref_decrypt",
        '4': "answer_4 = (\"signature\")",
    },
    '06_membership': {
        '1': "answer_1 = (\"stale_epoch\")",
        '2': "answer_2 = (max(k.epoch for k in epochs))",
        '3': "def can_read(chat_key, epoch, msg):\n    if epoch != msg.epoch:\n        return False\n    return try_decrypt(chat_key, epoch, msg)\nanswer_3 = can_read",
        '4': "answer_4 = (\"unknown_chat\")",
    },
    '07_attacks': {
        '1': "answer_1 = (\"bad_record\")",
        '2': "def make_interceptor():\n    done = []\n    def interceptor(frame):\n        if frame.source == \"alice\" and \"chat_send\" in frame.inner and not done:\n            done.append(frame)\n            return [frame, frame]\n        return [frame]\n    return interceptor\nanswer_2 = make_interceptor",
        '3': "answer_3 = (\"replay\")",
    },
    '08_key_designs': {
        '1': "answer_1 = (xor(*SHARES.values()))",
        '2': "answer_2 = (\"duplicate_share\")",
        '3': "answer_3 = (\"key_confirmation_failed\")",
        '4': "answer_4 = (len(_HYBRID_SENT.wraps))",
        '5': "answer_5 = (PQ[\"x25519+mlkem768\"][\"client_hello\"] - PQ[\"x25519\"][\"client_hello\"])",
    },
}

# Typical wrong answers the checks must refuse (the two checks that once accepted them): tests/test_notebooks.py
# runs each after the reference answer and expects "Exercise N: not yet".
WRONG = {
    "06_membership": {
        "3": '''def _ignores_epoch(chat_key, epoch, msg):
    return try_decrypt(chat_key, msg.epoch, msg)      # derives with the message's epoch, not the one it is given
answer_3 = _ignores_epoch''',
    },
    "07_attacks": {
        # the notebook's own tamper helper: alice's channel closes with bad_record, but nothing was duplicated
        "2": "answer_2 = lambda: tamper(source=\"alice\", carrying=\"chat_send\")",
    },
}
