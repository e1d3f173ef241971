"""
Device-wide network services (discovery, TCP 4900 capture, Auto IP Report, ...).
"""
