"""Audio adapters: pure functions over bytes and numpy arrays, no HTTP or database.

Import the modules themselves (``afterbeep.audio.g711``, ``.decode``,
``.rendition``, ``.tones``, ``.levels``, ``.compare``); this package imports
nothing so that the RTP path loads only numpy.
"""
