"""
The settings model, its file, the NPort models and the device identity.
"""
