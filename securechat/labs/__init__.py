"""Course labs: per-student parameters, the student release, autograding (nbgrader format), and the lab tools.

Owns: the ``python -m securechat.labs`` commands (``release``, ``grade``, ``params``, ``check-flag``, ``ctf``) and
per-student parameters (:mod:`securechat.labs.params`). The lab handouts and instructor notebooks live in the
repository's ``labs/`` folder; docs/INSTRUCTORS.md says how to run a lab in a room. Must not: weaken anything
outside an explicit lab mode (the weakened variants, the CTF server and the proxy have their own modules).
"""
