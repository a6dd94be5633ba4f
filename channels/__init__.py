"""Outbound message providers behind one interface: the console and Twilio SMS."""
