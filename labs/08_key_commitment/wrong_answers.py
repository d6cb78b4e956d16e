"""Typical wrong answers for lab 08 and the score each must get out of 8 (the handout's rubric); instructor-only.
Each entry: (what the student did, {solution cell grade_id: replacement source}, expected score)."""

WRONG = [
    ("free block weighted by H instead of H^2 (the tag is right for k1 only)", {"task1-solution": '''
def two_key_ciphertext(k1, k2, nonce, aad):
    h1, e1, s1 = gcm_parts(k1, nonce, 3)
    h2, e2, s2 = gcm_parts(k2, nonce, 3)
    base = xor(TEXT_BOB, s1[0]) + xor(TEXT_CAROL, s2[1]) + bytes(16)
    diff = e1 ^ e2 ^ ghash(h1, aad, base) ^ ghash(h2, aad, base)
    free = gf_mult(diff, gf_inv(h1 ^ h2))
    ciphertext = base[:32] + free.to_bytes(16, "big")
    return ciphertext, (e1 ^ ghash(h1, aad, ciphertext)).to_bytes(16, "big")
'''}, 5),
    ("committed_open decrypts without checking the commitment", {"task2-solution": '''
def committed_open(mk, commitment, header, nonce, ciphertext, tag):
    key, _ = hybrid_message_keys(mk, header)
    try:
        return AES.new(key, AES.MODE_GCM, nonce=nonce).update(header).decrypt_and_verify(ciphertext, tag)
    except ValueError:
        return None
'''}, 6),
]
