// Placeholder: the MiniLM text encoder lands here (issue 4).
