"""The built-in backends: serial, thread, process, asyncio.

They register through the entry-point group ``anyexec.backends`` in anyexec's own
``pyproject.toml``, exactly as third-party backends do.
"""
