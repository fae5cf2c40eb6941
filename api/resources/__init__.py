"""Falcon resources, one noun a module."""
