"""Benchmarks: each module measures us against anchors run side by side in the same run and prints ratios."""
