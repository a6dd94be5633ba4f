"""The Faust agents of one worker: ingest, ledger, sweeper and notifier."""
