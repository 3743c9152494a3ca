"""Building blocks of the synthetic company generator (see ``sophia_lib.sandbox.generator``).

Each module builds a few tables from numpy arrays; ``generator.generate`` calls them in dependency
order. Every module draws from its own named random stream (:func:`util.stream`) so that adding a
column in one place does not reshuffle every other table.
"""
