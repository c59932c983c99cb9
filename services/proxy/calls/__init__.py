"""The LLM routes: one call from request to recorded usage (relay, streams, attribution, limits, cost quote)."""
