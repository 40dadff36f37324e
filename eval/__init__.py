"""Benchmarks and evaluation harnesses for Diffill (imports the packages, never imported by them)."""
