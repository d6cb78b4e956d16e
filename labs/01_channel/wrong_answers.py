"""Typical wrong answers for lab 01 and the score each must get out of 9 (the handout's rubric); instructor-only.
Each entry: (what the student did, {solution cell grade_id: replacement source}, expected score)."""

WRONG = [
    ("checks the signature but not the pin (accepts Mallory's own server)", {"task1-solution": '''
def accept(client_hello, server_hello, pinned_der):
    transcript = transcript_hash(
        version=client_hello.version, key_exchange=client_hello.key_exchange,
        client_random=client_hello.random, client_share=client_hello.key_share,
        server_random=server_hello.random, server_share=server_hello.key_share,
        server_key=server_hello.server_key, server_scheme=server_hello.server_scheme)
    try:
        verify(SignatureScheme(server_hello.server_scheme), load_public_key(server_hello.server_key),
               server_signed_bytes(transcript), server_hello.signature)
    except SecureChatError:
        return False
    return True
'''}, 8),
    ("the two directions swapped", {"task2-solution": '''
def channel_keys(secret, transcript):
    return (hkdf_sha256(secret, salt=transcript, info=S2C_INFO), hkdf_sha256(secret, salt=transcript, info=C2S_INFO))
'''}, 7),
]
