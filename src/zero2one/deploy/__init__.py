"""Deployment files: a Docker build context with the model baked in, Kubernetes manifests."""

from zero2one.deploy.render import render_docker, render_k8s

__all__ = ["render_docker", "render_k8s"]
