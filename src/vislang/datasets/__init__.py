"""Synthetic data sets for training and testing the models offline."""
