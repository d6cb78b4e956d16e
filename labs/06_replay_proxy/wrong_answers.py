"""Typical wrong answers for lab 06 and the score each must get out of 9 (the handout's rubric); instructor-only.
Each entry: (what the student did, {solution cell grade_id: replacement source}, expected score)."""

WRONG = [
    ("flips a bit in alice's record instead of duplicating it (nothing duplicated; the server drops the connection)",
     {"task1-solution": '''
def make_duplicator():
    def interceptor(frame):
        if frame.source == "alice" and "chat_send" in frame.inner:
            data = bytearray(frame.data); data[-1] ^= 1
            return [type(frame)(**{**frame.__dict__, "data": bytes(data)})]
        return [frame]
    return interceptor
'''}, 6),
    ("holds the first record but never releases it (a drop, not a swap)", {"task2-solution": '''
def make_swapper():
    held = []
    def interceptor(frame):
        if frame.source == "alice" and "chat_send" in frame.inner and not held:
            held.append(frame)
            return []
        return [frame]
    return interceptor
'''}, 7),
]
