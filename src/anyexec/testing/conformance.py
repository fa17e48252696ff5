"""The module ``-p anyexec.testing --anyexec-backend=NAME`` collects: the whole suite."""

from anyexec.testing.suite import ConformanceSuite


class TestConformance(ConformanceSuite):
    """Every section of the conformance suite, for each selected backend."""
