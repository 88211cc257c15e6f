"""The layer as the engine sees it.

``adapter`` calls ``forward``/``backward`` and validates what they return,
``problem`` runs the analytic passes and serves the numerical side,
``state`` snapshots and restores the layer, ``precision`` decides the
working precision.
"""
