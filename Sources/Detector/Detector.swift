// Placeholder: the concept detector lands here (issue 4).
