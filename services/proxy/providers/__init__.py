"""Each upstream's wire format: request bodies out, OpenAI-shaped answers and usage back."""
