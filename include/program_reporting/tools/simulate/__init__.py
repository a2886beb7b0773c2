"""The three source systems, simulated, and the week-long demo of `make run`."""
