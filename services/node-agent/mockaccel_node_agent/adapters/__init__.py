"""The node agent's adapters: the only modules that speak Kubernetes or kubelet gRPC."""
