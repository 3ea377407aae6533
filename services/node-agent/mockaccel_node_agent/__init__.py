"""Kubelet DRA plugin: registration, NodePrepareResources/NodeUnprepareResources, CDI."""
