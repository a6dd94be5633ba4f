"""Outside formats turned into events: CAP alerts and the Ghost, Strapi and WordPress webhooks."""
