"""Command-line front end (`hashtagger`, `hashtag`): parses arguments and calls tasks.pipeline."""
