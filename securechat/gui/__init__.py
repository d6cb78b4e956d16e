"""``python -m securechat.gui``: a tkinter desktop launcher: a server window and N client windows.

Owns: widgets only. Every window is a thin driver over ``TcpServer``/``TcpClient``/``KeyStore``: no protocol
logic here. Tk is not thread-safe, so network callbacks and worker-thread results reach the widgets only
through ``App.post`` (a ``queue.Queue`` drained by ``root.after``).
"""

from .app import App, launch

__all__ = ["App", "launch"]
