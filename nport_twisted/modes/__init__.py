"""
One front-end module per NPort operating mode, attached to the channel core.
"""
