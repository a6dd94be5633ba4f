"""The pure deadline core: rules, calendars, ledgers, escalation decisions; no I/O."""
