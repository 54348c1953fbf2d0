"""Evaluation: reference strategies and reports over the native backtester."""
