"""Typical wrong answers for lab 07 and the score each must get out of 9 (the handout's rubric); instructor-only.
Each entry: (what the student did, {solution cell grade_id: replacement source}, expected score)."""

WRONG = [
    ("hands in a classmate's dsa-nonce flag", {"task1-solution":
        'from securechat.labs.flags import flag\nanswer_1 = flag("classmate-42", "dsa-nonce")\n'}, 7),
    ("answers the no-rekey task with the dsa-nonce flag", {"task2-solution": "answer_2 = answer_1\n"}, 6),
]
