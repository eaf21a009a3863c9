"""Finding the passages: dense and lexical retrieval, fusion, diversity, filters."""
