"""qreport: explain why a quantized PyTorch model lost accuracy, in one offline HTML report."""

__version__ = "0.1.0"
