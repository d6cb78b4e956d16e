"""Typical wrong answers for lab 03 and the score each must get out of 10 (the handout's rubric); instructor-only.
Each entry: (what the student did, {solution cell grade_id: replacement source}, expected score)."""

WRONG = [
    ("extrapolates quadratically in N", {"task1-solution":
        "answer_1 = median_s[max(exponents)] * 4 ** (17 - max(exponents))\n"}, 8),
    ("a new throttle every second (the server keeps its state)", {"task2-solution": '''
def admitted(addresses, seconds, config):
    total = 0
    for t in range(seconds):
        throttle = LoginThrottle(config)
        for a in addresses:
            while throttle.allowed("dave", a, float(t)):
                throttle.attempt("dave", a, float(t))
                throttle.failed("dave", a, float(t))
                total += 1
    return total
'''}, 7),
    ("tries the words without the two digits (finds nothing)", {"task3-solution": '''
answer_3 = None
for _w in labparams.WEAK_PASSWORDS:
    if verify_password(_w, leaked["dave"]):
        answer_3 = _w
'''}, 6),
]
