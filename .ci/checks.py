"""The CI scripts' checks: each prints one line, and the first that fails
ends the run (exit 1) with what was expected and what came."""

import sys


class Checks:
    def __init__(self, label):
        self.label = label
        self.passed = 0

    def __call__(self, what, condition, detail=""):
        if not condition:
            print(f"{self.label}: FAILED: {what} {detail}")
            sys.exit(1)
        self.passed += 1
        print(f"{self.label}: ok: {what}")

    def done(self):
        print(f"{self.label}: {self.passed} checks passed")
