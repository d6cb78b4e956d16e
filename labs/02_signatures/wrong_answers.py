"""Typical wrong answers for lab 02 and the score each must get out of 10 (the handout's rubric); instructor-only.
Each entry: (what the student did, {solution cell grade_id: replacement source}, expected score)."""

WRONG = [
    ("median_ci reports the mean as the centre", {"task1-solution": '''
def median_ci(xs):
    s = sorted(xs)
    n = len(s)
    j = max(0, min(n - 1, math.floor(n / 2 - 0.98 * math.sqrt(n))))
    k = max(0, min(n - 1, math.ceil(n / 2 + 0.98 * math.sqrt(n))))
    return (s[j], statistics.mean(s), s[k])
'''}, 8),
    ("adds the signatures instead of subtracting them (k and x wrong, so the forgery fails)", {"task2-solution": '''
answer_k = (h1 + h2) * pow(s1 + s2, -1, q) % q
answer_x = (s1 * answer_k - h1) * pow(r, -1, q) % q
'''}, 4),
    ("forges with bob's repeated nonce", {"task3-solution": '''
def forge(message):
    hh = int.from_bytes(hashlib.sha256(message).digest(), "big")
    ss = pow(answer_k, -1, q) * (hh + answer_x * r) % q
    return r.to_bytes(32, "big") + ss.to_bytes(32, "big")
'''}, 7),
]
