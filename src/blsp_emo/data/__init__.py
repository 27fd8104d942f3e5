"""Data: manifests, corpus importers, synthetic emotional speech, teacher targets, datasets."""
