"""Store passages and retrieve them: SQLite metadata, FAISS dense vectors, BM25 lexical, fusion."""
