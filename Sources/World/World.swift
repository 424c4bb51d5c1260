// Placeholder: datasets, scenes and PNG output land here (issue 4).
