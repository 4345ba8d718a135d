"""The imperative shell: adapters (Flask, paho, APScheduler, SQLAlchemy, Twilio) wired in one place."""
