"""Model definitions of the zoo."""
