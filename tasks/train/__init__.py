"""Train stage: one architecture, one recipe, one dataset version -> a model artifact."""
