"""``python -m securechat`` runs the interactive client (see ``python -m securechat.client --help``)."""
from .client import main

raise SystemExit(main())
