"""Tag stage: list a source's images, serve the champion on them, write results."""
