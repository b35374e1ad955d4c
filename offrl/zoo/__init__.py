"""Behaviour policies, dataset recipes and reference returns."""
