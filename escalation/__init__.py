"""The escalation runtime: the pure escalation core applied to live inputs, sent by channels."""
