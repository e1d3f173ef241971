"""
What every network face shares: listeners, the net table, admission of sessions.
"""
