"""What job authors use: the registry, the handler context, and job errors."""
