"""Replay a plan on a GPU and compare measured with predicted energy and time.

:mod:`.lanes` turns a plan's assignment into each instance's lanes; :mod:`.engine` runs them as a
continuous-batching engine whose slots are the lanes (:mod:`.attention`: decode attention over
each slot's own tokens); :mod:`.measure` reads the energy counter and charges each query its
share; :mod:`.compare` puts predicted beside measured; :mod:`.run` does it for a plan directory.
Only :mod:`.engine`, :mod:`.attention` and :mod:`.run` need torch, and import it lazily.
"""
