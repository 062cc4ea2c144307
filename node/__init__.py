"""The federated exchange node for public credit information (公共信用信息)."""

__version__ = "0.1.0"
