"""What the ``livepulse`` command runs besides the worker: the demo, producing files and
recordings.
"""
