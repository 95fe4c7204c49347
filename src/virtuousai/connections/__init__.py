"""Connections: credentials to external systems, with secrets envelope-encrypted, and the one resolver."""
