"""securechat: a secure group chat for cryptography and network-security courses."""
__version__ = "0.1.0"
