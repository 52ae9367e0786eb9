"""Replay a plan on a GPU and compare measured with predicted energy and time.

:mod:`.lanes` turns a plan's assignment into each instance's lanes; the characterization's
continuous-batching engine (:mod:`energyopt.characterize.engine`) runs them with the lanes as its
slots; :mod:`.measure` reads the energy counter and charges each query its share; :mod:`.compare`
puts predicted beside measured; :mod:`.run` does it for a plan directory (torch imported lazily).
"""
