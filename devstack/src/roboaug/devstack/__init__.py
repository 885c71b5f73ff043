"""roboaug.devstack: dev/test only. Builds and runs a real local Kubernetes control plane
(etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kwok) and a dev node agent.
Never shipped in the chart or an image. See README.md in this folder."""
