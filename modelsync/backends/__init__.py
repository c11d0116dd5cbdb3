"""Storage backends, one module each, found by modelsync.sources.backends().

A module here that defines ``BACKEND`` (a modelsync.sources.base.Backend) is a
backend: it owns its URL schemes and form, its [models.source_options] model and
how it talks to its store. Its client library is imported only when a source of
its kind is opened.
"""
