"""Deployment to Kubernetes: the Helm chart rendered from Python, and the plain manifests in k8s/."""
