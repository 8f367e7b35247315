"""Data stage: prepare dataset versions (official archives, image trees), read them, the one image decoder."""
