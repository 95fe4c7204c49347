"""Model providers with fallback and cost accounting.

- ``chain``: ``ModelChain`` tries its members in order, with a per-attempt timeout, and records every attempt.
- ``policy``: which failures fall back (provider failures) and which stop (request errors).
- ``providers``: pydantic-ai models built from an organization's LLM connections.
- ``aliases``: per-organization model aliases (``orchestrator``, ``fast``, …).
- ``prices``: the price table (``prices.json``) and cost per call; unknown prices stay unknown.
- ``scripted``: the scripted offline model for tests and the offline demo.
"""
