"""Envelope encryption of connection secrets and the key-encryption-key providers."""
