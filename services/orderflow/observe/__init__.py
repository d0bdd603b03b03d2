"""Seeing the flow from a terminal: one order's story (``trace``), the stuck orders by stage (``flow``), and the
dead letters you can act on (``dlq``).

Choreography has no place that knows an order's whole story: it is spread over four topics, four consumer groups,
four services' stores and four dead-letter topics. This package reads them all, as an operator would by hand —
the topics through the order id as Kafka key, the services through their HTTP APIs, the groups through their
committed offsets — and tells where an order stopped and what it waits for. It is part of the product (the image
carries it): ``orderflow trace|flow|dlq``.
"""
