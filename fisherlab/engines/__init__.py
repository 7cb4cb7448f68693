"""Per-sample Fisher engines: BackPACK fast paths and the torch.func fallback."""
