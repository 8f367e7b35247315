"""hashtagger's pipeline stages as plain functions: prepare -> train -> evaluate -> promote -> tag.

Nothing here imports TensorFlow at module level; stages that need Keras import it inside functions.
"""

__version__ = "0.1.0"
