"""MegaDrive: an end-to-end encrypted cloud drive.

``megadrive.server`` and ``megadrive.mount`` are the top-level folders
``server/`` and ``mount/`` of the checkout, reached through the symlinks
``megadrive/server`` and ``megadrive/mount``; no generic top-level name such
as ``server`` is ever installed.
"""

__version__ = "0.1.0"
