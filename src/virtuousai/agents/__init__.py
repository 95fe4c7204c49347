"""Agents: specs as markdown documents (parsed, validated, versioned), the tool catalog, and example agents."""
