"""Re-embedding a collection with another model while it keeps serving (issue 20)."""
