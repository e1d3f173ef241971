"""
Pure (sans-IO) wire codecs: bytes in, frozen attrs events out; no sockets, reactor or clock.
"""
