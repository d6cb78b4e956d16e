"""Course labs: weakened variants, a capture-the-flag server, an interception proxy, handouts and grading."""
