"""The outer loop: sweep configuration, drivers (Optuna, pymoo), backends, runner and CLI."""
