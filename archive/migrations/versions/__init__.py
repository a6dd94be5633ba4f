"""The archive's schema revisions, oldest first (each file names the one before it)."""
