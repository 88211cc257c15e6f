"""Numbers in, verdicts out: finite differences of a layer and their judgement.

``perturb`` holds the perturb-evaluate-restore loops, ``steps`` the step
rule, ``tolerances`` the tolerances, and one module per strategy
(``elementwise``, ``jacobian``, ``projection``, ``complex``, ``parallel``).
"""
