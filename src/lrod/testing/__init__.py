"""Helpers for testing lrod and code built on it (throwaway PostgreSQL)."""
