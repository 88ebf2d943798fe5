"""Builders shared by the tests (importable as `support`, see pytest's `pythonpath`): small builds, corpora and
labelled examples. Test modules import from here, never from each other."""
