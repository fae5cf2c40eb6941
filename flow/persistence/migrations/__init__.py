"""Numbered schema migrations, applied in order by ``flow migrate`` (peewee's runner).

Each file is frozen once released: it declares the tables it creates as copies of
the models of its day, never importing :mod:`flow.persistence.models`.
"""
