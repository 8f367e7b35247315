"""Labels -> ranked hashtags: candidates from providers (offline lexicon, X), normalised, ranked, filtered."""
