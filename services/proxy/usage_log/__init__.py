"""Usage events from the request path to Kafka: record, journal, spool, emitter."""
