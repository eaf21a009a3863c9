"""Answers from retrieved passages: context within a token budget, generators, citations."""
