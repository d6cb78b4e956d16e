"""Two widget habits every window shares: labels that stay wrapped to their width, and read-only logs.

Owns: ``keep_wrapped`` (a label re-wraps on every resize, so an error or a header is never cut) and
``append_line`` (add one line to a read-only text view, drop the oldest beyond a bound, scroll to the end).
Must not: choose what is shown: callers pass text that ``render``/``display`` already escaped.
"""

from __future__ import annotations

import time
import tkinter as tk
from collections.abc import Iterable
from tkinter import ttk


def keep_wrapped(label: tk.Label | ttk.Label, *, margin: int = 8, minimum: int = 200) -> None:
    """Wrap *label*'s text to its current width, now and after every resize."""
    label.bind("<Configure>", lambda event: label.configure(wraplength=max(minimum, event.width - margin)))


def append_line(view: tk.Text, parts: Iterable[tuple[str, str]], *, max_lines: int, stamp: bool = True) -> None:
    """Append one line of ``(text, tag)`` parts (after a grey ``HH:MM:SS`` if *stamp*) to a read-only *view*;
    beyond *max_lines* the oldest line goes."""
    view.configure(state="normal")
    if stamp:
        view.insert("end", time.strftime("%H:%M:%S "), "time")
    for text, tag in parts:
        view.insert("end", text, tag)
    view.insert("end", "\n")
    if int(view.index("end-1c").split(".")[0]) > max_lines:
        view.delete("1.0", "2.0")
    view.see("end")
    view.configure(state="disabled")
