"""The ColorProp node for Nuke. ``logic`` and ``exr_io`` are plain Python (tested without Nuke);
``node`` is the thin layer that talks to the ``nuke`` module."""
