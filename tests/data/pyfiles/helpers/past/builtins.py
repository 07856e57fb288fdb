"""The course's Python 2 compatibility name, as CS231n's starter code imports it."""

xrange = range
