"""Kafka plumbing: topics, the multi-row table, the broker, the journal, batched publishing."""
