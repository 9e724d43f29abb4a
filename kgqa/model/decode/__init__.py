"""Decoding under the KB index: the constraint, the relation look-ahead, path scores and the path trace."""
