"""
Client-side programs: nport-search, the Real COM client.
"""
