"""Small helpers that glue Hydra and Lightning together."""
