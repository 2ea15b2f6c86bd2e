"""Documents people send: reading them, storing their text once, fitting them to a model."""
