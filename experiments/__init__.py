"""The paper's experiments beside the method: the SGD training protocol, label generators, zero-shot
labels and the study grid. Only cli/ and bench/ use them; core/ never imports this package."""
