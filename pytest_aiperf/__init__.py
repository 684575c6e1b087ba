"""pytest-aiperf: every GPU optimization is a performance test."""

from pytest_aiperf.cases import Case, CaseParam, Guard, Stateful, Tolerance, Work

__all__ = ["Case", "CaseParam", "Guard", "Stateful", "Tolerance", "Work", "__version__"]
__version__ = "0.1.0"
