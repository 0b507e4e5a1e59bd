"""The package version, in one place (read by setup.py without importing)."""
__version__ = '5.5.0'
