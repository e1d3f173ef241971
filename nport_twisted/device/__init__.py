"""
The serial side: the device adapter (the only code touching pyserial), line-state types and the channel core.
"""
