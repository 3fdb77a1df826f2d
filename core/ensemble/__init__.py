"""Prediction: combining learners per availability pattern."""
