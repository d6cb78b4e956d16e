"""Typical wrong answers for lab 04 and the score each must get (the handout's rubric); instructor-only.

Each entry: (what the student did, {solution cell grade_id: replacement source}, expected score out of 9).
tests/test_labs.py grades the reference notebook with these cells swapped in.
"""

WRONG = [
    ("can_read ignores the epoch it is given (derives with msg.epoch)", {
        "task1-solution": '''
def can_read(chat_key, epoch, msg):
    header = chat_header(chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender, seq=msg.seq, suite="aes-256-gcm")
    try:
        unseal(sender_key(chat_key, chat_id=msg.chat_id, epoch=msg.epoch, sender=msg.sender), msg.ciphertext,
               aad=header, nonce=nonce_from_counter(msg.seq))
        return True
    except SecureChatError:
        return False
'''}, 8),
    ("task 2 answered with another student's secret (copied)", {
        "task2-solution": 'answer_2 = ["epoch 1: hello bob and carol", labparams.secret_message("someone-else")]\n'}, 7),
]
