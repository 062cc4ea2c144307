"""A federation on this machine: the demo (``credit-node demo``), and the parts tests and benchmarks share.

``layout`` plans nodes and writes their configurations; ``broker`` runs the TLS RabbitMQ;
``processes`` starts and stops node processes; ``run`` is the demo itself.
"""
