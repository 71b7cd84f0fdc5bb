"""The bottom of the import graph: what every layer needs (atomic files, the device, seeds,
the saved-artifact format). Nothing here imports training, pipelines or the CLI.

``ganforge.core.files`` is standard library only, so start-up paths that never touch a
network (``ganforge --help``, ``verify --no-detector``) can use it without importing torch.
"""
