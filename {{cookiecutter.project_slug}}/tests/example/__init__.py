"""The example's tests: removed with the example (README, "Removing the example")."""
