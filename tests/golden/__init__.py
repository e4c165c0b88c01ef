"""Unit and property tests of the golden integer operators."""
