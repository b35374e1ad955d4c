"""Trainers, evaluation, checkpoints and run directories."""
