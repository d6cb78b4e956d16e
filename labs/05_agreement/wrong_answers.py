"""Typical wrong answers for lab 05 and the score each must get out of 9 (the handout's rubric); instructor-only.
Each entry: (what the student did, {solution cell grade_id: replacement source}, expected score)."""

WRONG = [
    ("mallory sends the target itself as her share", {"task1-solution":
        "def last_mover_share(target, others):\n    return target\n"}, 6),
    ("commitment with the label of the signed commit message, not of the commitment", {"task2-solution":
        'def my_commitment(chat_id, epoch, sender, share):\n'
        '    return sha256(encode_fields("securechat v1 share commit", chat_id, epoch, sender, share))\n'}, 7),
]
