"""What is learned: the sentence embedder and the topic classifier."""
