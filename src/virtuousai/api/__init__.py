"""The FastAPI app: auth, problem+json errors, request ids, and each primitive's router mounted."""
