"""``envlock fleet``: which machines give the same bits (issue 20). Namespace only; its modules hold
the layers: ``rows`` (documents to typed rows) and ``picture`` (rows to classes, separating probes and
the profile view) and ``render`` (text) are pure logic; ``files`` (reading the files, measuring ULPs
between goldens) and ``plot`` (matplotlib) are side effects."""
