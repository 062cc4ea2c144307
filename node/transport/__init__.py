"""How records move between nodes: one ``Transport`` interface, an ``amqp`` and a ``grpc`` implementation.

``base`` defines the interface the forwarder speaks; ``wire`` the message encodings shared by both
transports; ``amqp*`` the RabbitMQ side (publisher, consumers, topology and permissions);
``grpc_forward`` the client stream to a parent's ``Exchange.Submit``.

The node's gRPC endpoint: ``grpc_server`` (mTLS-only server, health, reflection), ``peers`` (who is
calling, revocation per call, errors → status + ``credit-error-code``), the servicers
``exchange_service`` (with ``sources`` for unsigned records), ``query_service``, ``admin_service``
(with ``contacts``), and ``grpc_client`` (channels, calls, status → errors).
"""
