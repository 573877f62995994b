"""verl 0.9.1 integration (imports verl only in submodules that need it)."""
