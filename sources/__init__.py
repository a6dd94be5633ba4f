"""Outside formats turned into events: CAP alerts, Ghost/Strapi/WordPress webhooks, feeds."""
