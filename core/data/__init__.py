"""Footage: fetching registry-shipped clips/stills, decoding, the train/dev split, synthetic video."""
