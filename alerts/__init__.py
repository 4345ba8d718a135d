"""The pure core of the early-warning service: levels, readings, rules, alerts.

Only the standard library is imported here (a test enforces it), so the rules
can be reasoned about and tested without a broker, a database or a network.
"""
