"""Teaching and demo tools, apart from the runtime: the in-memory ``Simulation`` (step-by-step network with a
virtual clock), the scenario language and its two runners, sequence ``diagrams`` (needs matplotlib: ``pip install
securechat[notebooks]``), and the ``demo`` helpers of run_demo.py. Nothing in the runtime (protocol, crypto, net,
the CLI and the server) imports this package."""
