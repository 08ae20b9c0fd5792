"""Thin layer over Linux kernel interfaces; imports nothing above it."""
