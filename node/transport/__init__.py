"""How records move between nodes: one ``Transport`` interface, an ``amqp`` and a ``grpc`` implementation.

``base`` defines the interface the forwarder speaks; ``wire`` the message encodings shared by both
transports; ``amqp*`` the RabbitMQ side (publisher, consumers, topology and permissions);
``grpc_forward`` the client stream to a parent's ``Exchange.Submit``.
"""
