"""Studies over omrl data and algorithms (``omrl-study``): the fidelity protocol and the main job.

This package sits above both halves: it imports ``omrl_data`` (collection, catalog) and
``omrl_algos`` (training); ``omrl_data`` never imports ``omrl_algos``, and neither imports this.
"""
